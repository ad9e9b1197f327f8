// Package ratelimit provides neo_rate_limit, the edge's rate limiter
// (`http.handlers.neo_rate_limit`): zones of sliding-window counters whose
// state per key is a fixed 40-byte entry, in a table bounded by the zone's
// memory with segmented-LRU eviction; client addresses keyed by prefix (IPv6
// /64 by default); keys on the canonical host the tenant router resolves;
// counts optionally shared between edges through NATS JetStream counters.
// docs/rate-limit.md explains the design; table.go the algorithm.
package ratelimit

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/projectneo/caddy-neo/modules/neo"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults.
const (
	DefaultMemory     = 8 << 20
	DefaultIPv4Prefix = 32
	DefaultIPv6Prefix = 64
	// maxWindow bounds a zone's window (and so the clock arithmetic).
	maxWindow = 7 * 24 * time.Hour
	// log budget of a zone: lines per second, and burst.
	logRate  = 1
	logBurst = 10
)

// Handler is the `neo_rate_limit` handler. Each request is counted in every
// zone it matches, tightest zone first (fewest events per second); the first
// zone over its limit answers 429 with Retry-After (seconds), and the
// request is taken back from the zones that had counted it, so a limited
// request costs no zone any budget.
//
// Placeholders, set before the zones run: {neo.rate_limit.host}, the
// canonical host (what the tenant router resolves: lower case, no port, no
// trailing dot; one name per tenant and stage, tenant Platform host, or
// custom domain), {neo.rate_limit.tenant}, the tenant owning the host (empty
// for none); and when a request is limited, {neo.rate_limit.zone}.
//
// A limited key is logged once per window (zone, tenant, host, client,
// retry_after), at most logBurst lines at once and logRate per second per
// zone; the lines not written are counted in the next line and in
// caddy_neo_rate_limit_log_suppressed_total.
type Handler struct {
	// Zones by name. A zone's state is kept across config reloads while a
	// zone of the same name, memory and mode (local or distributed) exists;
	// zones of the same name in several handlers share their state. Required.
	Zones map[string]*Zone `json:"zones,omitempty"`
	// Distributed shares the zones' counts with the other edges through NATS
	// JetStream counters. Default: off (each edge counts alone).
	Distributed *Distributed `json:"distributed,omitempty"`

	zones  []*Zone
	app    *neo.App
	logger *zap.Logger
	sync   *syncer
	keys   []string // table pool keys, for Cleanup
}

// Zone is one rate limit: at most Events requests per Window for each value
// of Key among the requests that Match.
type Zone struct {
	// Match selects the requests the zone counts (matcher sets, any of which
	// may match). Default: every request.
	MatcherSetsRaw caddyhttp.RawMatcherSets `json:"match,omitempty" caddy:"namespace=http.matchers"`
	// Key is what is counted, with placeholders: {http.request.remote.host}
	// or {http.vars.client_ip} (the client address, cut to IPv4Prefix or
	// IPv6Prefix bits), {neo.rate_limit.host}, {neo.rate_limit.tenant}, or
	// any other placeholder; a literal makes one count for all requests.
	// Required.
	Key string `json:"key,omitempty"`
	// Events allowed per window and key. Required, at least 1.
	Events int `json:"events,omitempty"`
	// Window is the sliding window's length. Required, at most 7 days.
	Window caddy.Duration `json:"window,omitempty"`
	// Memory bounds the zone's state in bytes (40 bytes per key plus its
	// index, about 46 bytes per key in all); when it is full, new keys evict
	// the least recently used light keys. At least 64 KiB. Default: 8 MiB.
	Memory int64 `json:"memory,omitempty"`
	// IPv4Prefix and IPv6Prefix: client addresses in the key count by
	// prefix of this length (IPv4 1-32, IPv6 1-128). Defaults: 32 and 64
	// (an IPv6 client typically holds a whole /64).
	IPv4Prefix int `json:"ipv4_prefix,omitempty"`
	IPv6Prefix int `json:"ipv6_prefix,omitempty"`

	name        string
	key         keyTemplate
	matcherSets caddyhttp.MatcherSets
	limits      limits
	table       *table
	distributed bool
	stats       *zoneMetrics
	log         *logBudget
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.neo_rate_limit",
		New: func() caddy.Module { return new(Handler) },
	}
}

// tables keeps zone states across config reloads.
var tables = caddy.NewUsagePool()

// Provision fills defaults, loads matchers and takes each zone's state.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	if h.Distributed != nil {
		h.Distributed.provision()
	}
	names := make([]string, 0, len(h.Zones))
	for name := range h.Zones {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		z := h.Zones[name]
		if z == nil {
			return fmt.Errorf("zones.%s: empty zone", name)
		}
		z.name = name
		if z.Memory == 0 {
			z.Memory = DefaultMemory
		}
		if z.IPv4Prefix == 0 {
			z.IPv4Prefix = DefaultIPv4Prefix
		}
		if z.IPv6Prefix == 0 {
			z.IPv6Prefix = DefaultIPv6Prefix
		}
		if err := z.validate(h.Distributed != nil); err != nil {
			return fmt.Errorf("zones.%s.%w", name, err)
		}
		kt, err := parseKey(z.Key, z.IPv4Prefix, z.IPv6Prefix)
		if err != nil {
			return fmt.Errorf("zones.%s.key: %w", name, err)
		}
		z.key = kt
		if len(z.MatcherSetsRaw) > 0 {
			sets, err := ctx.LoadModule(z, "MatcherSetsRaw")
			if err != nil {
				return fmt.Errorf("zones.%s.match: %w", name, err)
			}
			if err := z.matcherSets.FromInterface(sets); err != nil {
				return fmt.Errorf("zones.%s.match: %w", name, err)
			}
		}
		z.distributed = h.Distributed != nil
		z.limits = limits{
			events:    uint32(z.Events),
			window:    int64(z.Window),
			aligned:   z.distributed,
			pend:      z.distributed,
			promoteAt: uint32(max(2, (z.Events+15)/16)),
		}
		z.stats = newZoneMetrics(name)
		z.log = &logBudget{tokens: logBurst}
		poolKey := fmt.Sprintf("%s\x00%d\x00%t", name, z.Memory, z.distributed)
		v, _, err := tables.LoadOrNew(poolKey, func() (caddy.Destructor, error) {
			return newTable(z.Memory, z.distributed, z.stats), nil
		})
		if err != nil {
			return err
		}
		h.keys = append(h.keys, poolKey)
		z.table = v.(*table)
		h.zones = append(h.zones, z)
	}
	if len(h.zones) == 0 {
		return errors.New("zones: at least one zone is required")
	}
	// Tightest zone first: a request limited there is not counted in the
	// looser ones.
	slices.SortStableFunc(h.zones, func(a, b *Zone) int {
		ra := float64(a.Events) / float64(a.Window)
		rb := float64(b.Events) / float64(b.Window)
		switch {
		case ra < rb:
			return -1
		case ra > rb:
			return 1
		}
		return 0
	})
	if app, err := ctx.AppIfConfigured("neo"); err == nil && app != nil {
		h.app, _ = app.(*neo.App)
	}
	if h.Distributed != nil {
		s, err := h.Distributed.start(ctx, h.zones, h.logger)
		if err != nil {
			return fmt.Errorf("distributed: %w", err)
		}
		h.sync = s
	}
	return nil
}

func (z *Zone) validate(distributed bool) error {
	switch {
	case z.Key == "":
		return errors.New("key: required (a literal gives one count for all requests)")
	case z.Events < 1 || z.Events > 1<<30:
		return fmt.Errorf("events: %d: want 1 to %d", z.Events, 1<<30)
	case z.Window <= 0 || time.Duration(z.Window) > maxWindow:
		return fmt.Errorf("window: %s: want more than 0 and at most %s", time.Duration(z.Window), maxWindow)
	case z.Memory < minMemory:
		return fmt.Errorf("memory: %d bytes: want at least %d (64 KiB)", z.Memory, minMemory)
	case z.IPv4Prefix < 1 || z.IPv4Prefix > 32:
		return fmt.Errorf("ipv4_prefix: %d: want 1 to 32", z.IPv4Prefix)
	case z.IPv6Prefix < 1 || z.IPv6Prefix > 128:
		return fmt.Errorf("ipv6_prefix: %d: want 1 to 128", z.IPv6Prefix)
	case distributed && !validToken(z.name):
		return fmt.Errorf("name: %q: with distributed counts a zone name must be letters, digits, '-' or '_' (it is a NATS subject token)", z.name)
	}
	return nil
}

// Validate checks what Provision did not already refuse.
func (h *Handler) Validate() error {
	if len(h.zones) == 0 {
		return errors.New("zones: at least one zone is required")
	}
	return nil
}

// Cleanup releases the zones' state and stops the distributed sync.
func (h *Handler) Cleanup() error {
	if h.sync != nil {
		h.sync.stop()
	}
	for _, k := range h.keys {
		_, _ = tables.Delete(k)
	}
	return nil
}

// Destruct adjusts the metrics of a zone whose state is dropped.
func (t *table) Destruct() error {
	if t.stats != nil {
		t.stats.keys.Sub(float64(t.Len()))
		t.stats.memory.Sub(float64(t.Bytes()))
	}
	return nil
}

// resolveHost returns the canonical host and the tenant of a Host header.
func (h *Handler) resolveHost(raw string) (host, tenant string) {
	host, ok := neo.NormalizeHost(raw)
	if !ok {
		return "", ""
	}
	if h.app != nil {
		if t, ok := h.app.Registry().Snapshot().TenantForHost(host); ok {
			tenant = t.Name
		}
	}
	return host, tenant
}

// counted is an event a zone counted for the current request.
type counted struct {
	z     *Zone
	key   uint64
	start int64
}

// ServeHTTP counts the request in its zones and calls next, or answers 429.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	ri := reqInfo{r: r, repl: repl}
	ri.host, ri.tenant = h.resolveHost(r.Host)
	repl.Set(PlaceholderHost, ri.host)
	repl.Set(PlaceholderTenant, ri.tenant)
	var done [8]counted
	n := 0
	var buf [256]byte
	for _, z := range h.zones {
		if len(z.matcherSets) > 0 {
			ok, err := z.matcherSets.AnyMatchWithError(r)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
		}
		key := keyHash(z.distributed, z.table.seed, z.key.appendKey(buf[:0], &ri))
		v := z.table.hit(key, clock(z.distributed), &z.limits)
		if v.allowed {
			z.stats.allowed.Inc()
			if n < len(done) {
				done[n] = counted{z, key, v.start}
				n++
			}
			continue
		}
		z.stats.limited.Inc()
		for _, d := range done[:n] {
			d.z.table.undo(d.key, d.start)
		}
		return h.limited(w, r, repl, z, &ri, v)
	}
	return next.ServeHTTP(w, r)
}

// limited answers 429 and logs the key's first limited request of its window.
func (h *Handler) limited(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, z *Zone, ri *reqInfo, v verdict) error {
	secs := (v.wait + int64(time.Second) - 1) / int64(time.Second)
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	repl.Set(PlaceholderZone, z.name)
	if v.firstLimit {
		if ok, suppressed := z.log.take(time.Now()); ok {
			client, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
			if client == "" {
				client = remoteHost(r.RemoteAddr)
			}
			h.logger.Info("rate limit exceeded",
				zap.String("zone", z.name),
				zap.String("tenant", ri.tenant),
				zap.String("host", ri.host),
				zap.String("client", client),
				zap.Int64("retry_after", secs),
				zap.Int("events", z.Events),
				zap.Duration("window", time.Duration(z.Window)),
				zap.Int64("suppressed", suppressed))
		} else {
			z.stats.suppressed.Inc()
		}
	}
	return caddyhttp.Error(http.StatusTooManyRequests, fmt.Errorf("rate limit of zone %s exceeded", z.name))
}

// processStart anchors the local clock: monotonic, in Unix nanoseconds.
var processStart = time.Now()

// clock returns now in nanoseconds: the wall clock for distributed zones
// (edges must agree on window boundaries), else a monotonic clock.
func clock(distributed bool) int64 {
	if distributed {
		return time.Now().UnixNano()
	}
	return processStart.UnixNano() + int64(time.Since(processStart))
}

// logBudget rate-limits a zone's log lines.
type logBudget struct {
	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int64
}

// take spends one line of the budget; it returns whether a line may be
// written and how many were suppressed since the last one.
func (b *logBudget) take(now time.Time) (bool, int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(logBurst, b.tokens+now.Sub(b.last).Seconds()*logRate)
	}
	b.last = now
	if b.tokens < 1 {
		b.suppressed++
		return false, 0
	}
	b.tokens--
	s := b.suppressed
	b.suppressed = 0
	return true, s
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddy.Destructor            = (*table)(nil)
)
