// Package neo is the caddy-neo tenant registry and router.
//
// The `neo` app (JSON `apps.neo`, Caddyfile global option `neo`) holds this
// node's zone, the platform and runtime domains, the ordered stages, the
// tenants (apps, per-stage replicas, custom domains) and the platform
// services. Tenants are data, not site blocks: the registry is an immutable
// Snapshot behind an atomic pointer; a request costs a bounded number of
// lookups whatever the fleet size, and a tenant change builds a new snapshot
// sharing every other tenant (a persistent hash trie), so it costs
// O(size of that tenant + log32 fleet), not O(fleet).
//
// Modules of this package:
//   - apps.neo: the registry (App);
//   - http.handlers.neo_route: resolves requests (RouteHandler);
//   - http.reverse_proxy.upstreams.neo: the resolved route's replicas (Upstreams);
//   - tls.permission.neo: on-demand TLS only for routed hosts (Permission);
//   - admin.api.neo: tenants as REST resources under /neo/ (AdminAPI);
//   - neo.stores.file: run-time tenants as JSON files (FileStore).
//
// A store shared between nodes (neo.stores.nats in modules/natskv) also
// implements Watcher: the app watches it from Start to Stop and applies
// every change any node makes (shared.go); AuthoredStore and Historian add
// the audit trail served at /neo/tenants/{t}/history.
//
// Go API for other modules (upstream selection, NATS transport):
//   - RouteFromRequest(r) returns the *Route neo_route resolved: tenant,
//     stage, app or service, zone, the replicas and the snapshot used;
//   - Current() returns the running App; App.Registry().Snapshot() a
//     consistent snapshot, with Snapshot.AppReplicas(tenant, app, stage),
//     Snapshot.ServiceReplicas(service), Snapshot.Tenant(name),
//     Snapshot.Routes(host) and Snapshot.Resolve(host, path).
package neo

import (
	"github.com/projectneo/caddy-neo/modules/zonelb"

	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the `neo` Caddy app: the tenant registry of this node.
type App struct {
	// Zone is this node's availability zone (DNS label). Required.
	Zone string `json:"zone,omitempty"`
	// PlatformDomain: tenant t's Platform host is `t.<platform_domain>`.
	// Default: platform.localhost.
	PlatformDomain string `json:"platform_domain,omitempty"`
	// RuntimeDomain: tenant t's production host is `t.<runtime_domain>`, its
	// host in non-production stage s is `t-s.<runtime_domain>`.
	// Default: apps.localhost.
	RuntimeDomain string `json:"runtime_domain,omitempty"`
	// Stages in order: development first, production last. Default: ["dev", "prod"].
	Stages []string `json:"stages,omitempty"`
	// Zones are the deployment's availability zones, in failover ring
	// order. When set, Zone must be one of them, every replica must name
	// one of them (a replica without a zone, or with another zone, is
	// refused), and a node's failover order (ZoneOrder) defaults to the
	// zones that follow its own around the ring: az-b, az-c for az-a, and
	// az-a, az-b for az-c with zones az-a az-b az-c. Default: none (a
	// replica without a zone is in the zone of the node that reads it).
	Zones []string `json:"zones,omitempty"`
	// Tenants defined in the config (read-only at run time), by name.
	Tenants map[string]*TenantConfig `json:"tenants,omitempty"`
	// Services are the platform services shared by all tenants, by name.
	Services map[string]*ServiceConfig `json:"services,omitempty"`
	// StoreRaw is where tenants created at run time are kept.
	// Default: a file store in Caddy's data directory (`neo/tenants`).
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=neo.stores inline_key=module"`
	// ZoneOrder is the failover order of the other zones for upstream
	// selection (`lb_policy neo_zone`) and for the NATS transport's zone
	// failover. Default: with Zones, the zones after this node's around the
	// ring; without, the order replicas list them.
	ZoneOrder []string `json:"zone_order,omitempty"`
	// LocalThreshold is the healthy share of the local zone's replicas below
	// which traffic spills to other zones, in (0, 1]. Default: 1.
	LocalThreshold float64 `json:"local_threshold,omitempty"`
	// PanicThreshold is the healthy share of a pool below which health is
	// ignored and traffic goes to all replicas, in [0, 1). Default: 0.5.
	PanicThreshold float64 `json:"panic_threshold,omitempty"`
	// DisablePanic turns panic mode off. Default: false.
	DisablePanic bool `json:"disable_panic,omitempty"`
	// MetricsNoTenantLabel drops the tenant label from request metrics (for
	// very large fleets). Default: false.
	MetricsNoTenantLabel bool `json:"metrics_no_tenant_label,omitempty"`
	// Welcome lines are logged (INFO) when the process first starts
	// serving this registry, for example where to go next. Default: none.
	Welcome []string `json:"welcome,omitempty"`

	reg     *Registry
	store   Store
	g       *globals
	logger  *zap.Logger
	metrics *metrics
	seq     uint64 // storeSeq when the store was loaded

	ctx         context.Context
	ws          *watchState // nil unless watching a shared store
	watchCancel context.CancelFunc
	watchDone   chan struct{}
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "neo",
		New: func() caddy.Module { return new(App) },
	}
}

// current is the running App (the one of the active config).
var current atomic.Pointer[App]

// storeSeq counts store writes, so an App provisioned during a change can
// reload what it missed when it starts.
var storeSeq atomic.Uint64

// Current returns the App of the running config, or nil.
func Current() *App { return current.Load() }

// ZoneFailover returns this node's zone followed by the failover order of
// the others (ZoneOrder, or its default), for modules that send requests to
// a zone (the NATS transport) without importing this package.
func (a *App) ZoneFailover() []string {
	out := make([]string, 0, 1+len(a.ZoneOrder))
	out = append(out, a.Zone)
	for _, z := range a.ZoneOrder {
		if z != a.Zone {
			out = append(out, z)
		}
	}
	return out
}

// Registry returns the app's registry.
func (a *App) Registry() *Registry { return a.reg }

// Provision fills defaults, loads the store and builds the first snapshot.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.ctx = ctx
	a.reg = new(Registry)
	if a.PlatformDomain == "" {
		a.PlatformDomain = "platform.localhost"
	}
	if a.RuntimeDomain == "" {
		a.RuntimeDomain = "apps.localhost"
	}
	if len(a.Stages) == 0 {
		a.Stages = []string{"dev", "prod"}
	}
	g, err := newGlobals(a.Zone, a.RuntimeDomain, a.PlatformDomain, a.Stages, a.Services)
	if err != nil {
		return err
	}
	if err := g.setZones(a.Zones); err != nil {
		return err
	}
	if len(a.ZoneOrder) == 0 && len(a.Zones) > 0 {
		a.ZoneOrder = ringOrder(a.Zones, a.Zone)
	}
	if err := g.checkZoneOrder(a.ZoneOrder); err != nil {
		return err
	}
	if err := g.setLB(zonelb.Options{ZoneOrder: a.ZoneOrder, LocalThreshold: a.LocalThreshold,
		PanicThreshold: a.PanicThreshold, NoPanic: a.DisablePanic}); err != nil {
		return err
	}
	a.g = g
	if a.StoreRaw == nil {
		a.StoreRaw = json.RawMessage(`{"module":"file"}`)
	}
	mod, err := ctx.LoadModule(a, "StoreRaw")
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	a.store = mod.(Store)
	if _, ok := a.store.(Watcher); ok {
		a.ws = new(watchState)
	}
	m, err := newMetrics(ctx, a.MetricsNoTenantLabel)
	if err != nil {
		return err
	}
	a.metrics = m
	snap, err := a.load()
	if err != nil {
		return err
	}
	a.reg.cur.Store(snap)
	a.metrics.size(snap)
	return nil
}

func (a *App) load() (*Snapshot, error) {
	a.seq = storeSeq.Load()
	stored, err := a.store.Load()
	if err != nil {
		return nil, fmt.Errorf("store: loading tenants: %w", err)
	}
	return build(a.g, a.Tenants, stored, func(name string, err error) {
		a.logger.Warn("stored tenant not loaded", zap.String("tenant", name), zap.Error(err))
	})
}

// Start makes this app the current one (admin API, TLS permission).
func (a *App) Start() error {
	if storeSeq.Load() != a.seq {
		// A run-time change landed between Provision and Start: reload.
		snap, err := a.load()
		if err != nil {
			return err
		}
		a.reg.cur.Store(snap)
	}
	first := current.Swap(a) == nil
	a.startWatch()
	a.logger.Info("tenant registry ready", zap.Int("tenants", a.reg.Snapshot().Len()), zap.String("zone", a.Zone))
	if first {
		for _, line := range a.Welcome {
			a.logger.Info(line)
		}
	}
	return nil
}

// Stop stops being the current app and stops watching a shared store.
func (a *App) Stop() error {
	current.CompareAndSwap(a, nil)
	a.stopWatch()
	return nil
}

// Cleanup stops the store watcher if Stop did not run (failed start).
func (a *App) Cleanup() error {
	a.stopWatch()
	return nil
}

// Put creates or replaces a run-time tenant: it validates tc, writes it to
// the store, then publishes a new snapshot. Config tenants are read-only.
func (a *App) Put(name string, tc *TenantConfig) (created bool, err error) {
	return a.PutBy(name, tc, Author{})
}

// PutBy is Put recording who makes the change (for stores with an audit trail).
func (a *App) PutBy(name string, tc *TenantConfig, who Author) (created bool, err error) {
	return a.put(name, tc, nil, who)
}

// PutIfUnchanged is PutBy for a change made on a copy of the tenant, prev:
// it fails with ErrConflict if the tenant is no longer prev, here or (with
// a ConditionalStore) in the store.
func (a *App) PutIfUnchanged(name string, prev, tc *TenantConfig, who Author) error {
	_, err := a.put(name, tc, prev, who)
	return err
}

func (a *App) put(name string, tc, prev *TenantConfig, who Author) (created bool, err error) {
	a.reg.mu.Lock()
	defer a.reg.mu.Unlock()
	cur := a.reg.Snapshot()
	old, exists := cur.Tenant(name)
	if exists && old.Source == SourceConfig {
		return false, fmt.Errorf("tenant %q: %w", name, ErrReadOnly)
	}
	if prev != nil && (!exists || !sameConfig(old.Config, prev)) {
		return false, fmt.Errorf("tenant %q: %w", name, ErrConflict)
	}
	t, err := a.g.compileTenant(name, SourceStore, tc)
	if err != nil {
		return false, err
	}
	next, err := cur.put(t)
	if err != nil {
		return false, err
	}
	storeSeq.Add(1)
	who.Zone = a.Zone
	if cs, ok := a.store.(ConditionalStore); ok && prev != nil {
		err = cs.PutIfUnchanged(name, prev, tc, who)
	} else if as, ok := a.store.(AuthoredStore); ok {
		err = as.PutBy(name, tc, who)
	} else {
		err = a.store.Put(name, tc)
	}
	if err != nil {
		return false, storeErr(err)
	}
	a.reg.cur.Store(next)
	a.metrics.size(next)
	return !exists, nil
}

// Delete removes a run-time tenant.
func (a *App) Delete(name string) error {
	return a.DeleteBy(name, Author{})
}

// DeleteBy is Delete recording who makes the change.
func (a *App) DeleteBy(name string, who Author) error {
	a.reg.mu.Lock()
	defer a.reg.mu.Unlock()
	cur := a.reg.Snapshot()
	old, exists := cur.Tenant(name)
	if !exists {
		return fmt.Errorf("tenant %q: %w", name, ErrNotFound)
	}
	if old.Source == SourceConfig {
		return fmt.Errorf("tenant %q: %w", name, ErrReadOnly)
	}
	storeSeq.Add(1)
	var err error
	if as, ok := a.store.(AuthoredStore); ok {
		who.Zone = a.Zone
		err = as.DeleteBy(name, who)
	} else {
		err = a.store.Delete(name)
	}
	if err != nil {
		return storeErr(err)
	}
	next := cur.remove(name)
	a.reg.cur.Store(next)
	a.metrics.size(next)
	return nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
