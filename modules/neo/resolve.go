package neo

import (
	"github.com/projectneo/caddy-neo/modules/zonelb"

	"errors"
	"net/http"
	"strings"
)

// The canonical path rule
//
// neo_route resolves the app or service from one canonical form of the
// request path and forwards exactly that form, so no spelling of a path can
// reach an app other than the one resolved:
//
//  1. The request target must be in origin form (`/...`). Absolute-form
//     targets (`GET https://other-host/... HTTP/1.1`), authority form and `*`
//     are refused with 400: the host is taken only from Host / :authority.
//  2. The raw (still encoded) path must not contain an encoded slash (%2F),
//     backslash (%5C), dot (%2E), NUL (%00) or a double encoding (%25 followed
//     by two hex digits), in any letter case: 400. The decoded path must not
//     contain a backslash or a control character: 400.
//  3. Dot segments and empty segments are removed (`/a/./b//c/../d` becomes
//     `/a/b/d`; `..` never climbs above `/`); a trailing slash is kept. When
//     this changes the path, the request continues with the cleaned path.
//     The upstream receives the cleaned, decoded path in Go's canonical
//     encoding (other percent-encodings such as %6F are decoded).
//  4. The first segment of the cleaned path names the app (case-sensitive).
//     Platform services match the longest configured prefix of the cleaned path.

// errBadPath is returned for paths breaking rule 1 or 2.
var errBadPath = errors.New("request target not in canonical form")

// cleanPath applies rule 3 to a decoded path that begins with '/'.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	// Fast path: already clean.
	clean := true
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i+1 < len(p) {
			switch p[i+1] {
			case '/':
				clean = false
			case '.':
				rest := p[i+2:]
				if rest == "" || rest[0] == '/' || rest[0] == '.' && (len(rest) == 1 || rest[1] == '/') {
					clean = false
				}
			}
		}
		if !clean {
			break
		}
	}
	if clean && p[0] == '/' {
		return p
	}
	trailing := strings.HasSuffix(p, "/")
	segs := make([]string, 0, 8)
	for s := range strings.SplitSeq(p, "/") {
		switch s {
		case "", ".":
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
		default:
			segs = append(segs, s)
		}
	}
	if len(segs) == 0 {
		return "/"
	}
	out := "/" + strings.Join(segs, "/")
	if trailing || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..") {
		out += "/"
	}
	return out
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// checkRawPath applies rule 2 to the raw path (before '?').
func checkRawPath(raw string) bool {
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
		if c != '%' {
			continue
		}
		if i+2 >= len(raw) {
			return false
		}
		a, b := raw[i+1], raw[i+2]|0x20
		switch {
		case a == '2' && (b == 'e' || b == 'f'),
			a == '5' && b == 'c',
			a == '0' && b == '0':
			return false
		case a == '2' && b == '5' && i+4 < len(raw) && isHex(raw[i+3]) && isHex(raw[i+4]):
			return false
		}
	}
	return true
}

// checkDecodedPath applies rule 2 to the decoded path.
func checkDecodedPath(p string) bool {
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// CanonicalPath applies rules 1 to 3 to a request: it returns the cleaned path
// (and whether it differs from r.URL.Path), or ok=false for a 400.
func CanonicalPath(r *http.Request) (path string, changed, ok bool) {
	raw := r.RequestURI
	if raw == "" { // requests built in-process
		raw = r.URL.RequestURI()
	}
	if len(raw) == 0 || raw[0] != '/' || r.URL.Host != "" {
		return "", false, false
	}
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	if !checkRawPath(raw) || !checkDecodedPath(r.URL.Path) || !strings.HasPrefix(r.URL.Path, "/") {
		return "", false, false
	}
	p := cleanPath(r.URL.Path)
	return p, p != r.URL.Path, true
}

// NormalizeHost lowercases host, removes a port and one trailing dot, and
// checks that what remains is a plausible DNS name (ASCII letters, digits,
// hyphens and dots, at most 253 characters). IPv6 literals and anything else
// give ok=false.
func NormalizeHost(host string) (string, bool) {
	if len(host) == 0 || len(host) > 260 || host[0] == '[' {
		return "", false
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		port := host[i+1:]
		if len(port) > 5 {
			return "", false
		}
		for j := 0; j < len(port); j++ {
			if port[j] < '0' || port[j] > '9' {
				return "", false
			}
		}
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	if len(host) == 0 || len(host) > 253 {
		return "", false
	}
	upper := false
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.':
		case c >= 'A' && c <= 'Z':
			upper = true
		default:
			return "", false
		}
	}
	if upper {
		host = strings.ToLower(host)
	}
	return host, true
}

// Result is what a request resolves to.
type Result struct {
	Tenant *Tenant
	// Stage is the stage name; empty for platform requests.
	Stage string
	// StageIndex is the stage's position (production last); -1 for platform requests.
	StageIndex int
	// App is the resolved app, nil for platform requests.
	App *TenantApp
	// Service is the resolved platform service, nil for app requests.
	Service *Service
	// Redirect, when not empty, is where a custom domain's `/` redirects (301).
	Redirect string
	// Rewrite, when not empty, is the path a custom domain's `/` continues as.
	Rewrite string
}

// Miss reasons, for logs and metrics. None of them is shown to clients.
const (
	MissHost    = "unknown_host"
	MissApp     = "unknown_app"
	MissStage   = "app_not_in_stage"
	MissService = "unknown_service"
	// MissSubject: a request that came through a stage gateway resolves to
	// another tenant, stage or app than its NATS subject names.
	MissSubject = "subject_mismatch"
)

// Resolve resolves a normalised host and a canonical path. It costs a bounded
// number of trie and map lookups, independent of the number of tenants.
func (s *Snapshot) Resolve(host, path string) (Result, string) {
	m := s.resolveHost(host)
	switch m.kind {
	case hostUnknown:
		return Result{}, MissHost
	case hostPlatform:
		for _, sv := range s.g.services {
			if strings.HasPrefix(path, sv.Path) || path == sv.Path[:len(sv.Path)-1] {
				return Result{Tenant: m.t, StageIndex: -1, Service: sv}, ""
			}
		}
		return Result{}, MissService
	}
	if m.kind == hostCustom && m.dom.mode == "all" {
		// the domain is the default app's: every path, unchanged
		return s.app(m, m.dom.app)
	}
	seg := path[1:]
	if i := strings.IndexByte(seg, '/'); i >= 0 {
		seg = seg[:i]
	}
	if seg == "" && m.kind == hostCustom && m.dom.app != "" {
		seg = m.dom.app
		if m.dom.mode == "redirect" {
			a, ok := m.t.app(seg)
			if !ok || !a.stages[m.stage].deployed {
				return Result{}, MissStage
			}
			return Result{Tenant: m.t, Stage: s.g.stages.names[m.stage], StageIndex: m.stage, App: a, Redirect: "/" + seg + "/"}, ""
		}
		res, miss := s.app(m, seg)
		res.Rewrite = "/" + seg + "/"
		return res, miss
	}
	return s.app(m, seg)
}

func (s *Snapshot) app(m hostMatch, name string) (Result, string) {
	a, ok := m.t.app(name)
	if !ok {
		return Result{}, MissApp
	}
	if !a.stages[m.stage].deployed {
		return Result{}, MissStage
	}
	return Result{Tenant: m.t, Stage: s.g.stages.names[m.stage], StageIndex: m.stage, App: a}, ""
}

// Pool returns the zone-aware rotation of the resolved app in the resolved
// stage, or of the service; nil when there is none.
func (r *Result) Pool() *zonelb.Pool { _, p, _ := r.target(false); return p }

// Replicas returns the resolved app's replicas in the resolved stage, or the
// service's replicas. Do not modify the slice.
func (r *Result) Replicas() []Replica { reps, _, _ := r.target(false); return reps }

// target returns the resolved pool's replicas, rotation and (with stats,
// made on first use) metric cache: the app's in the resolved stage, or the
// service's; all nil for neither.
func (r *Result) target(stats bool) ([]Replica, *zonelb.Pool, *poolStats) {
	switch {
	case r.App != nil:
		as := &r.App.stages[r.StageIndex]
		var st *poolStats
		if stats {
			st = as.poolStats()
		}
		return as.replicas, as.pool, st
	case r.Service != nil:
		return r.Service.Replicas, r.Service.Pool, r.Service.stats
	}
	return nil, nil, nil
}
