package neo

import (
	"net"
	"net/netip"
	"slices"

	"github.com/projectneo/caddy-neo/modules/zonelb"

	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Source tells where a tenant comes from.
type Source string

const (
	// SourceConfig marks tenants of the Caddy config: read-only at run time.
	SourceConfig Source = "config"
	// SourceStore marks tenants created at run time and kept in the store.
	SourceStore Source = "store"
)

// Tenant is a tenant compiled for routing. Values are immutable once
// published in a Snapshot.
type Tenant struct {
	Name   string
	Source Source
	// Config is the tenant's configuration as given (do not modify).
	Config *TenantConfig
	apps   map[string]*TenantApp
	// appList holds the same apps for lookups (app): with the few apps a
	// tenant has, a scan of one small array touches fewer cache lines than
	// a map (header, group, key) when the tenant's data is not in cache.
	appList []appRef
}

type appRef struct {
	name string
	app  *TenantApp
}

// app returns the tenant's app of that name.
func (t *Tenant) app(name string) (*TenantApp, bool) {
	if len(t.appList) > maxAppList {
		a, ok := t.apps[name]
		return a, ok
	}
	for i := range t.appList {
		if t.appList[i].name == name {
			return t.appList[i].app, true
		}
	}
	return nil, false
}

// maxAppList is the number of apps up to which app scans appList.
const maxAppList = 16

// TenantApp is a compiled app: its replicas per stage, indexed by stage position.
type TenantApp struct {
	// Public is the app's AppConfig.Public.
	Public bool
	// H2C: the app's replicas speak h2c (AppConfig.Protocol).
	H2C  bool
	Name string
	// stages[i] is the app in stage i, all a request needs in one place;
	// with up to len(inline) stages it is inline, in the same allocation.
	stages []appStage
	inline [4]appStage
}

// appStage is an app's deployment in one stage.
type appStage struct {
	// replicas is nil when the app is not deployed in the stage.
	replicas []Replica
	// pool is the zone-aware rotation over replicas: one per tenant, app
	// and stage, never shared with another tenant.
	pool *zonelb.Pool
	// stats caches the pool's metric series; made on the first request,
	// so that tenants without traffic do not pay for it.
	stats    atomic.Pointer[poolStats]
	deployed bool
}

// poolStats returns the stage's metric cache, making it on first use.
func (as *appStage) poolStats() *poolStats {
	if st := as.stats.Load(); st != nil {
		return st
	}
	as.stats.CompareAndSwap(nil, newPoolStats(as.pool))
	return as.stats.Load()
}

// Service is a compiled platform service.
type Service struct {
	Name     string
	Path     string
	Replicas []Replica
	// Pool is the zone-aware rotation over Replicas (same order).
	Pool  *zonelb.Pool
	stats *poolStats
	// declared is Replicas as configured (zones not filled in).
	declared []Replica
}

type domainEntry struct {
	tenant  string
	stage   int
	app     string // default app
	mode    string
	pending bool
}

// globals is the node-wide part of a snapshot, fixed for a config's life.
type globals struct {
	lb             zonelb.Options // validated
	zone           string
	runtimeDomain  string // without leading dot
	platformDomain string
	runtimeSuffix  string // "." + runtimeDomain
	platformSuffix string
	stages         *stageSet
	services       []*Service // longest path first
	serviceByName  map[string]*Service
	// zones is the registry's declared zones (App.Zones), nil when none
	// are declared.
	zones map[string]bool
	// zoneNames is App.Zones in order, for error messages.
	zoneNames []string
}

// Snapshot is one immutable version of the registry. Readers load it once per
// request and see one consistent registry; writers build a new snapshot that
// shares every unchanged tenant with the old one.
type Snapshot struct {
	g       *globals
	tenants pmap[*Tenant]
	domains pmap[domainEntry]
	// sub counts, for every parent name (of at least two labels) of a
	// custom domain, the custom domains under it, so that a domain that
	// would be the parent of another tenant's is found without a scan.
	sub     pmap[int]
	version uint64

	// byAddr maps a replica's IP to its tenant, stage and app; built on
	// first use (ReplicaByIP) for this snapshot.
	byAddrOnce sync.Once
	byAddr     map[netip.Addr]ReplicaOwner
}

// ReplicaOwner is the tenant, stage and app a replica address serves.
type ReplicaOwner struct {
	Tenant, Stage, App string
}

// ReplicaByIP returns the tenant, stage and app whose replica listens on ip.
// An IP that replicas of more than one tenant, stage or app share (as on a
// developer machine where every replica is 127.0.0.1) names nobody: such
// callers must identify themselves otherwise. The index is built once per
// snapshot, in time proportional to the fleet; lookups are O(1).
func (s *Snapshot) ReplicaByIP(ip netip.Addr) (ReplicaOwner, bool) {
	s.byAddrOnce.Do(func() {
		idx := map[netip.Addr]ReplicaOwner{}
		shared := map[netip.Addr]bool{}
		s.RangeTenants(func(t *Tenant) bool {
			for an, a := range t.apps {
				for si := range a.stages {
					reps := a.stages[si].replicas
					for _, r := range reps {
						host, _, err := net.SplitHostPort(r.Address)
						if err != nil {
							continue
						}
						addr, err := netip.ParseAddr(host)
						if err != nil {
							continue // a name, not an address
						}
						o := ReplicaOwner{Tenant: t.Name, Stage: s.g.stages.names[si], App: an}
						if prev, ok := idx[addr.Unmap()]; ok && prev != o {
							shared[addr.Unmap()] = true
						}
						idx[addr.Unmap()] = o
					}
				}
			}
			return true
		})
		for a := range shared {
			delete(idx, a)
		}
		s.byAddr = idx
	})
	o, ok := s.byAddr[ip.Unmap()]
	return o, ok
}

// Registry holds the current snapshot. Reads are lock-free
// (an atomic pointer load); changes are serialised by a mutex and published
// with one atomic store.
type Registry struct {
	cur atomic.Pointer[Snapshot]
	mu  sync.Mutex // serialises writers
}

// Snapshot returns the current snapshot.
func (r *Registry) Snapshot() *Snapshot { return r.cur.Load() }

// ErrNotFound is returned for unknown tenants and sub-resources.
var ErrNotFound = errors.New("not found")

// ErrReadOnly is returned when changing a tenant defined in the config.
var ErrReadOnly = errors.New("read-only: defined in the Caddy config")

func newGlobals(zone, runtimeDomain, platformDomain string, stages []string, services map[string]*ServiceConfig) (*globals, error) {
	if zone == "" {
		return nil, errors.New("zone: required")
	}
	if err := checkLabel("zone", zone); err != nil {
		return nil, err
	}
	for f, d := range map[string]string{"runtime_domain": runtimeDomain, "platform_domain": platformDomain} {
		if !ValidHostname(d) && !(d != "" && ValidLabel(d)) {
			return nil, fmt.Errorf("%s: %q is not a valid lowercase host name", f, d)
		}
	}
	if runtimeDomain == platformDomain {
		return nil, fmt.Errorf("runtime_domain and platform_domain: must differ, both are %q", runtimeDomain)
	}
	if strings.HasSuffix(runtimeDomain, "."+platformDomain) || strings.HasSuffix(platformDomain, "."+runtimeDomain) {
		return nil, fmt.Errorf("runtime_domain %q and platform_domain %q: one must not be a subdomain of the other", runtimeDomain, platformDomain)
	}
	ss, err := newStageSet(stages)
	if err != nil {
		return nil, err
	}
	g := &globals{
		zone: zone, runtimeDomain: runtimeDomain, platformDomain: platformDomain,
		runtimeSuffix: "." + runtimeDomain, platformSuffix: "." + platformDomain,
		stages: ss, serviceByName: map[string]*Service{},
	}
	prefixes := map[string]string{}
	for _, name := range sortedKeys(services) {
		sc := services[name]
		f := "services." + name
		if err := checkLabel(f, name); err != nil {
			return nil, err
		}
		if sc == nil {
			return nil, fmt.Errorf("%s: missing service object", f)
		}
		p := sc.Path
		if !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") || p == "/" || cleanPath(p) != strings.TrimSuffix(p, "/") && cleanPath(p) != p {
			return nil, fmt.Errorf("%s.path: %q must be a clean path prefix beginning and ending with / (for example /api/build/)", f, p)
		}
		if strings.ContainsAny(p, "%\\") {
			return nil, fmt.Errorf("%s.path: %q must not contain %% or \\", f, p)
		}
		if other, dup := prefixes[p]; dup {
			return nil, fmt.Errorf("%s.path: %q is already the path of service %q", f, p, other)
		}
		prefixes[p] = name
		if err := checkReplicas(f+".replicas", sc.Replicas); err != nil {
			return nil, err
		}
		s := &Service{Name: name, Path: p, Replicas: withZone(sc.Replicas, zone), declared: sc.Replicas}
		g.services = append(g.services, s)
		g.serviceByName[name] = s
	}
	sort.SliceStable(g.services, func(i, j int) bool { return len(g.services[i].Path) > len(g.services[j].Path) })
	if err := g.setLB(zonelb.Options{LocalZone: zone}); err != nil {
		return nil, err
	}
	return g, nil
}

// setZones declares the registry's zones: the node's zone and every replica's
// zone (services here, tenants in compileTenant) must be one of them.
func (g *globals) setZones(zones []string) error {
	if len(zones) == 0 {
		return nil
	}
	g.zones = make(map[string]bool, len(zones))
	for i, z := range zones {
		if err := checkLabel(fmt.Sprintf("zones[%d]", i), z); err != nil {
			return err
		}
		if g.zones[z] {
			return fmt.Errorf("zones[%d]: %q is listed twice", i, z)
		}
		g.zones[z] = true
	}
	g.zoneNames = slices.Clone(zones)
	if !g.zones[g.zone] {
		return fmt.Errorf("zone: %q is not one of the registry's zones (%s)", g.zone, strings.Join(zones, ", "))
	}
	for _, name := range sortedKeys(g.serviceByName) {
		if err := g.checkZones("services."+name+".replicas", g.serviceByName[name].declared); err != nil {
			return err
		}
	}
	return nil
}

// checkZones checks, when the registry declares zones, that every replica
// names one of them: a replica without a zone would be in whichever zone
// the node reading the file is in, and a misspelt zone in none.
func (g *globals) checkZones(field string, rs []Replica) error {
	if g.zones == nil {
		return nil
	}
	for i, r := range rs {
		switch {
		case r.Zone == "":
			return fmt.Errorf("%s[%d].zone: missing: name the replica's zone (%s)", field, i, strings.Join(g.zoneNames, ", "))
		case !g.zones[r.Zone]:
			return fmt.Errorf("%s[%d].zone: unknown zone %q (zones: %s)", field, i, r.Zone, strings.Join(g.zoneNames, ", "))
		}
	}
	return nil
}

// checkZoneOrder checks, when the registry declares zones, that a failover
// order names only declared zones.
func (g *globals) checkZoneOrder(order []string) error {
	for i, z := range order {
		if g.zones != nil && !g.zones[z] {
			return fmt.Errorf("zone_order[%d]: unknown zone %q (zones: %s)", i, z, strings.Join(g.zoneNames, ", "))
		}
	}
	return nil
}

// ringOrder returns the zones after zone around the ring of zones, the
// failover order of a node in zone when none is configured.
func ringOrder(zones []string, zone string) []string {
	i := slices.Index(zones, zone)
	if i < 0 {
		return nil
	}
	out := make([]string, 0, len(zones)-1)
	for k := 1; k < len(zones); k++ {
		out = append(out, zones[(i+k)%len(zones)])
	}
	return out
}

// setLB sets the zone-aware selection options and rebuilds the services'
// pools. Tenants compiled afterwards use them.
func (g *globals) setLB(o zonelb.Options) error {
	o.LocalZone = g.zone
	if err := o.Validate(); err != nil {
		return err
	}
	g.lb = o
	for _, s := range g.services {
		p, err := zonelb.NewPool(members(s.Replicas), o)
		if err != nil {
			return fmt.Errorf("services.%s: %w", s.Name, err)
		}
		s.Pool = p
		s.stats = newPoolStats(p)
	}
	return nil
}

func members(rs []Replica) []zonelb.Member {
	ms := make([]zonelb.Member, len(rs))
	for i, r := range rs {
		ms[i] = zonelb.Member{Address: r.Address, Zone: r.Zone}
	}
	return ms
}

func withZone(rs []Replica, zone string) []Replica {
	out := make([]Replica, len(rs))
	for i, r := range rs {
		if r.Zone == "" {
			r.Zone = zone
		}
		out[i] = r
	}
	return out
}

// compileTenant validates tc and compiles it. It does not check conflicts
// with other tenants.
func (g *globals) compileTenant(name string, src Source, tc *TenantConfig) (*Tenant, error) {
	field := "tenants." + name
	if err := CheckTenantName(field, name); err != nil {
		return nil, err
	}
	if err := tc.Validate(field, g.stages); err != nil {
		return nil, err
	}
	for _, an := range sortedKeys(tc.Apps) {
		for _, sn := range sortedKeys(tc.Apps[an].Stages) {
			if err := g.checkZones(field+".apps."+an+".stages."+sn+".replicas", tc.Apps[an].Stages[sn].Replicas); err != nil {
				return nil, err
			}
		}
	}
	if src == SourceStore && tc.Identity.HasPlainPasswords() {
		return nil, fmt.Errorf("%s.identity: plain-text passwords are accepted only in the Caddy config; the admin API stores their hashes", field)
	}
	for _, host := range sortedKeys(tc.Domains) {
		if err := g.checkDomainAgainstGlobals(host); err != nil {
			return nil, fmt.Errorf("%s.domains.%s: %w", field, host, err)
		}
	}
	t := &Tenant{Name: name, Source: src, Config: tc, apps: make(map[string]*TenantApp, len(tc.Apps)), appList: make([]appRef, 0, len(tc.Apps))}
	for an, ac := range tc.Apps {
		a := &TenantApp{Name: an, Public: ac.Public, H2C: ac.Protocol == ProtocolH2C}
		if n := len(g.stages.names); n <= len(a.inline) {
			a.stages = a.inline[:n]
		} else {
			a.stages = make([]appStage, n)
		}
		for sn, sc := range ac.Stages {
			i := g.stages.index[sn]
			reps := withZone(sc.Replicas, g.zone)
			p, err := zonelb.NewPool(members(reps), g.lb)
			if err != nil {
				return nil, fmt.Errorf("apps.%s.stages.%s: %w", an, sn, err)
			}
			a.stages[i].replicas, a.stages[i].pool, a.stages[i].deployed = reps, p, true
		}
		t.apps[an] = a
		t.appList = append(t.appList, appRef{name: an, app: a})
	}
	return t, nil
}

func emptySnapshot(g *globals) *Snapshot { return &Snapshot{g: g} }

// put returns a snapshot with tenant t added or replaced. It fails, naming
// both, when t's hosts would be ambiguous with another tenant's or a custom
// domain belongs to another tenant.
func (s *Snapshot) put(t *Tenant) (*Snapshot, error) { return s.putMode(t, false) }

// putMode is put; inPlace (only while building an unpublished snapshot)
// changes s's tables in place.
func (s *Snapshot) putMode(t *Tenant, inPlace bool) (*Snapshot, error) {
	exists := func(u string) bool { _, ok := s.tenants.Get(u); return ok && u != t.Name }
	if amb := s.g.stages.ambiguity(t.Name, exists); amb != "" {
		return nil, fmt.Errorf("tenants.%s: ambiguous host names: %s", t.Name, amb)
	}
	old, hadOld := s.tenants.Get(t.Name)
	for _, host := range sortedKeys(t.Config.Domains) {
		if err := s.checkDomainNesting(t.Name, host, old); err != nil {
			return nil, fmt.Errorf("tenants.%s.domains.%s: %w", t.Name, host, err)
		}
	}
	ns := &Snapshot{g: s.g, tenants: s.tenants, domains: s.domains, sub: s.sub, version: s.version + 1}
	if hadOld {
		for host := range old.Config.Domains {
			if _, keep := t.Config.Domains[host]; !keep {
				ns.domains = ns.domains.Without(host)
				ns.sub = countParents(ns.sub, host, -1, false)
			}
		}
	}
	for host := range t.Config.Domains {
		if hadOld {
			if _, had := old.Config.Domains[host]; had {
				continue
			}
		}
		ns.sub = countParents(ns.sub, host, +1, inPlace)
	}
	for host, dc := range t.Config.Domains {
		mode := dc.DefaultAppMode
		if mode == "" {
			mode = "redirect"
		}
		de := domainEntry{tenant: t.Name, stage: s.g.stages.index[dc.Stage], app: dc.DefaultApp, mode: mode, pending: dc.Pending}
		if inPlace {
			ns.domains = ns.domains.withInPlace(host, de)
		} else {
			ns.domains = ns.domains.With(host, de)
		}
	}
	if inPlace {
		ns.tenants = ns.tenants.withInPlace(t.Name, t)
	} else {
		ns.tenants = ns.tenants.With(t.Name, t)
	}
	return ns, nil
}

// remove returns a snapshot without tenant name.
func (s *Snapshot) remove(name string) *Snapshot {
	old, ok := s.tenants.Get(name)
	if !ok {
		return s
	}
	ns := &Snapshot{g: s.g, tenants: s.tenants.Without(name), domains: s.domains, sub: s.sub, version: s.version + 1}
	for host := range old.Config.Domains {
		ns.domains = ns.domains.Without(host)
		ns.sub = countParents(ns.sub, host, -1, false)
	}
	return ns
}

// checkDomainNesting refuses host as a custom domain of tenant when it is
// another tenant's custom domain, a name under one, or a parent of one: a
// tenant must not receive requests, certificates or cookies (Domain=...) of
// another tenant's names. old is the tenant's current version, if any (its
// own domains do not count). O(labels of host + domains of old).
func (s *Snapshot) checkDomainNesting(tenant, host string, old *Tenant) error {
	if de, ok := s.domains.Get(host); ok && de.tenant != tenant {
		return fmt.Errorf("already a domain of tenant %q: %w", de.tenant, ErrCustomDomain)
	}
	var err error
	domainAncestors(host, func(parent string) bool {
		if de, ok := s.domains.Get(parent); ok && de.tenant != tenant {
			err = fmt.Errorf("%q is under %q, a domain of tenant %q: %w", host, parent, de.tenant, ErrCustomDomain)
			return false
		}
		return true
	})
	if err != nil {
		return err
	}
	under, _ := s.sub.Get(host)
	if old != nil {
		for own := range old.Config.Domains {
			if isUnder(own, host) {
				under--
			}
		}
	}
	if under > 0 {
		// Name one (a scan, on refusal only).
		other, otherTenant := "", ""
		s.domains.Range(func(name string, de domainEntry) bool {
			if de.tenant != tenant && isUnder(name, host) {
				other, otherTenant = name, de.tenant
				return false
			}
			return true
		})
		return fmt.Errorf("%q is a parent of %q, a domain of tenant %q: %w", host, other, otherTenant, ErrCustomDomain)
	}
	return nil
}

// countParents adds delta to the count of every parent of host in m; inPlace
// (only for an unpublished snapshot) changes m's tables in place.
func countParents(m pmap[int], host string, delta int, inPlace bool) pmap[int] {
	domainAncestors(host, func(parent string) bool {
		n, _ := m.Get(parent)
		switch n += delta; {
		case n <= 0:
			m = m.Without(parent)
		case inPlace:
			m = m.withInPlace(parent, n)
		default:
			m = m.With(parent, n)
		}
		return true
	})
	return m
}

// Version counts the changes since the snapshot's registry was built.
func (s *Snapshot) Version() uint64 { return s.version }

// Len returns the number of tenants.
func (s *Snapshot) Len() int { return s.tenants.Len() }

// Domains returns the number of custom domains.
func (s *Snapshot) Domains() int { return s.domains.Len() }

// Zone returns this node's availability zone.
func (s *Snapshot) Zone() string { return s.g.zone }

// Stages returns the ordered stage names (production last). Do not modify.
func (s *Snapshot) Stages() []string { return s.g.stages.names }

// Tenant returns a tenant by name.
func (s *Snapshot) Tenant(name string) (*Tenant, bool) { return s.tenants.Get(name) }

// RangeTenants calls f for every tenant until f returns false.
func (s *Snapshot) RangeTenants(f func(*Tenant) bool) {
	s.tenants.Range(func(_ string, t *Tenant) bool { return f(t) })
}

// AppReplicas returns the replicas of a tenant's app in a stage. ok is false
// when the tenant, app or stage is unknown or the app is not deployed there.
// The slice is shared: do not modify it.
func (s *Snapshot) AppReplicas(tenant, app, stage string) (replicas []Replica, ok bool) {
	t, ok := s.tenants.Get(tenant)
	if !ok {
		return nil, false
	}
	a, ok := t.app(app)
	if !ok {
		return nil, false
	}
	i, ok := s.g.stages.index[stage]
	if !ok || !a.stages[i].deployed {
		return nil, false
	}
	return a.stages[i].replicas, true
}

// ServiceReplicas returns the replicas of a platform service. The slice is
// shared: do not modify it.
func (s *Snapshot) ServiceReplicas(service string) ([]Replica, bool) {
	sv, ok := s.g.serviceByName[service]
	if !ok {
		return nil, false
	}
	return sv.Replicas, true
}

// Services returns the platform services, longest path first. Do not modify.
func (s *Snapshot) Services() []*Service { return s.g.services }

// Routes reports whether the registry routes host (normalised: lowercase,
// no port, no trailing dot): a Runtime host of an existing tenant in any
// stage, a Platform host of an existing tenant, or an active custom domain.
// It is what tls.permission.neo allows certificates for.
func (s *Snapshot) Routes(host string) bool {
	return s.resolveHost(host).kind != hostUnknown
}

// TenantForHost returns the tenant a host belongs to (any stage's Runtime
// host, the Platform host, an active custom domain), whatever the path: what
// handlers before neo_route, such as the WAF, need. The host may carry a port
// or a trailing dot and any case. O(stages) lookups.
func (s *Snapshot) TenantForHost(host string) (*Tenant, bool) {
	h, ok := NormalizeHost(host)
	if !ok {
		return nil, false
	}
	m := s.resolveHost(h)
	return m.t, m.t != nil
}

type hostKind uint8

const (
	hostUnknown hostKind = iota
	hostRuntime
	hostCustom
	hostPlatform
)

type hostMatch struct {
	t     *Tenant
	stage int // stage index; -1 for platform hosts
	kind  hostKind
	dom   domainEntry
}

// resolveHost maps a normalised host to its tenant and stage. At most
// len(stages)+1 trie lookups, whatever the number of tenants.
func (s *Snapshot) resolveHost(host string) hostMatch {
	g := s.g
	if label, ok := strings.CutSuffix(host, g.runtimeSuffix); ok && label != "" && !strings.Contains(label, ".") {
		// <tenant>-<stage> first, then <tenant> (production). The order does
		// not change the answer: a registry where both readings name a
		// tenant is ambiguous and rejected (stageSet.ambiguity). It saves a request
		// to a non-production stage one lookup that would miss.
		for i := 0; i < g.stages.prod(); i++ {
			st := g.stages.names[i]
			if len(label) > len(st)+1 && label[len(label)-len(st)-1] == '-' && label[len(label)-len(st):] == st {
				if t, ok := s.tenants.Get(label[:len(label)-len(st)-1]); ok {
					return hostMatch{t: t, stage: i, kind: hostRuntime}
				}
			}
		}
		if t, ok := s.tenants.Get(label); ok {
			return hostMatch{t: t, stage: g.stages.prod(), kind: hostRuntime}
		}
		return hostMatch{}
	}
	if label, ok := strings.CutSuffix(host, g.platformSuffix); ok && label != "" && !strings.Contains(label, ".") {
		if t, ok := s.tenants.Get(label); ok {
			return hostMatch{t: t, stage: -1, kind: hostPlatform}
		}
		return hostMatch{}
	}
	if de, ok := s.domains.Get(host); ok && !de.pending {
		if t, ok := s.tenants.Get(de.tenant); ok {
			return hostMatch{t: t, stage: de.stage, kind: hostCustom, dom: de}
		}
	}
	return hostMatch{}
}

// build compiles config tenants and store tenants into a first snapshot.
// Config tenants win over store tenants of the same name (reported through warn).
func build(g *globals, cfg map[string]*TenantConfig, stored map[string]*TenantConfig, warn func(string, error)) (*Snapshot, error) {
	s := emptySnapshot(g)
	for _, name := range sortedKeys(cfg) {
		t, err := g.compileTenant(name, SourceConfig, cfg[name])
		if err != nil {
			return nil, err
		}
		if s, err = s.putMode(t, true); err != nil {
			return nil, err
		}
	}
	for _, name := range sortedKeys(stored) {
		if _, ok := cfg[name]; ok {
			warn(name, errors.New("tenant defined in the config and in the store: the config wins"))
			continue
		}
		t, err := g.compileTenant(name, SourceStore, stored[name])
		if err == nil {
			var ns *Snapshot
			if ns, err = s.putMode(t, true); err == nil {
				s = ns
				continue
			}
		}
		warn(name, fmt.Errorf("stored tenant skipped: %w", err))
	}
	s.version = 0
	return s, nil
}
