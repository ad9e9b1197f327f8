package neo

import (
	"errors"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// sources records where each part of the neo option was written in the
// Caddyfile (tenant files included), by the JSON field path the registry's
// validation names in its errors (`tenants.acme.apps.orders.stages.dev`,
// `services.build.replicas[1]`), so that an adapt-time error names the file
// and line of the mistake.
type sources map[string]caddyfile.Token

// mark records the current token as the source of path.
func (s sources) mark(path string, d *caddyfile.Dispenser) {
	if s == nil {
		return
	}
	if tok := d.Token(); tok.File != "" || tok.Line != 0 {
		s[path] = tok
	}
}

// at returns the token recorded for the longest prefix of path, cutting it
// back one segment (`.name` or `[i]`) at a time.
func (s sources) at(path string) (caddyfile.Token, bool) {
	for path != "" {
		if tok, ok := s[path]; ok {
			return tok, true
		}
		i := strings.LastIndexAny(path, ".[")
		if i <= 0 {
			break
		}
		path = path[:i]
	}
	return caddyfile.Token{}, false
}

// checkAdapted validates the registry as adapted so far, as Provision will,
// and names the file and line of the first mistake: a replica without a
// zone or in an undeclared zone, a replica listed twice, an unknown stage or
// app, ambiguous host names... Settings the block leaves out take their
// defaults, so stages, zones and domains must be declared before the
// tenants (caddyfiles/registry.caddy does); the zone may come later.
func (a *App) checkAdapted(src sources) error {
	err := a.validateRegistry()
	if err == nil {
		return nil
	}
	path, _, _ := strings.Cut(err.Error(), ": ")
	if strings.ContainsAny(path, " \"") {
		path = ""
	}
	tok, ok := src.at(path)
	if !ok {
		return errors.New("neo: " + err.Error())
	}
	d := caddyfile.NewDispenser([]caddyfile.Token{tok})
	d.Next()
	return d.Errf("neo: %v", err)
}

// validateRegistry compiles the configured registry (no store) and returns
// its first error.
func (a *App) validateRegistry() error {
	b := *a
	if b.PlatformDomain == "" {
		b.PlatformDomain = "platform.localhost"
	}
	if b.RuntimeDomain == "" {
		b.RuntimeDomain = "apps.localhost"
	}
	if len(b.Stages) == 0 {
		b.Stages = []string{"dev", "prod"}
	}
	if b.Zone == "" {
		// the zone may be set by a later neo block: check the rest
		b.Zone = "unset"
		if len(b.Zones) > 0 {
			b.Zone = b.Zones[0]
		}
	}
	g, err := newGlobals(b.Zone, b.RuntimeDomain, b.PlatformDomain, b.Stages, b.Services)
	if err != nil {
		return err
	}
	if err := g.setZones(b.Zones); err != nil {
		return err
	}
	if err := g.checkZoneOrder(b.ZoneOrder); err != nil {
		return err
	}
	_, err = build(g, b.Tenants, nil, func(string, error) {})
	return err
}
