package neo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// ErrStoreUnavailable is wrapped by stores whose backend cannot be reached
// (for example NATS is down); the admin API answers 503 and the registry
// keeps serving its last snapshot.
var ErrStoreUnavailable = errors.New("tenant store unavailable")

// ErrConflict is returned when a change was made on a copy of a tenant that
// has changed since (on this node or another); the admin API answers 409.
var ErrConflict = errors.New("conflict: the tenant changed meanwhile (possibly on another node); read it again and retry")

// ConditionalStore is a Store that can write a tenant only if its stored
// value is still prev (compare-and-swap). The registry uses it for changes
// to a part of a tenant (an app, its replicas, a domain), which rewrite the
// whole tenant from this node's copy: without it, a concurrent change made
// through another node could be overwritten unseen.
type ConditionalStore interface {
	// PutIfUnchanged writes t if the stored tenant equals prev, else
	// returns an error wrapping ErrConflict.
	PutIfUnchanged(name string, prev, t *TenantConfig, who Author) error
}

// Author tells who makes a run-time change, for stores that keep an audit
// trail (AuthoredStore).
type Author struct {
	// Remote is the admin API client's address.
	Remote string `json:"remote,omitempty"`
	// Actor is the admin API request's `Neo-Actor` header (a person or a
	// system, as the caller claims it; the admin endpoint's own access
	// control is what authenticates callers).
	Actor string `json:"actor,omitempty"`
	// Node is the node that accepted the change (set by the store).
	Node string `json:"node,omitempty"`
	// Zone is the zone of the node that accepted the change.
	Zone string `json:"zone,omitempty"`
}

// AuthoredStore is a Store that records who makes each change. The registry
// calls PutBy and DeleteBy instead of Put and Delete when a store has them.
type AuthoredStore interface {
	Store
	PutBy(name string, t *TenantConfig, who Author) error
	DeleteBy(name string, who Author) error
}

// HistoryEntry is one revision of a tenant in a store's audit trail.
type HistoryEntry struct {
	// Revision is the store's revision number (increasing across the store).
	Revision uint64 `json:"revision"`
	// Operation is PUT, DEL or PURGE.
	Operation string `json:"operation"`
	// When is the time the node accepting the change gave it.
	When time.Time `json:"when,omitzero"`
	// Stored is the time the store recorded the revision.
	Stored time.Time `json:"stored,omitzero"`
	// Who made the change, when known.
	Who *Author `json:"who,omitempty"`
	// Tenant is the configuration written (PUT only).
	Tenant *TenantConfig `json:"tenant,omitempty"`
	// Error tells why a revision's value could not be decoded.
	Error string `json:"error,omitempty"`
}

// Historian is a Store that keeps the history of each tenant. The admin API
// serves it at GET /neo/tenants/{t}/history.
type Historian interface {
	// History returns the revisions of the tenant, oldest first; ErrNotFound
	// when the store has none.
	History(name string) ([]HistoryEntry, error)
}

// Change is one tenant change a Watcher reports.
type Change struct {
	// Name of the tenant.
	Name string
	// Tenant is the new configuration; nil when the tenant was deleted.
	Tenant *TenantConfig
	// Revision is the store's revision of the change.
	Revision uint64
	// Ready marks the end of the initial values: every tenant of the store
	// has been reported once (Name and Tenant are empty).
	Ready bool
}

// Watcher is a Store shared between nodes: the registry watches it and
// applies every change made by any node, its own included (applying a
// change already in the snapshot is a no-op).
type Watcher interface {
	// Watch reports every tenant of the store, then a Change with Ready
	// set, then every change, in store order, until ctx ends or the watch
	// fails; it returns nil when ctx ended. A value it cannot decode is
	// logged by the store and skipped. The registry calls Watch again after
	// an error.
	Watch(ctx context.Context, apply func(Change)) error
}

// watch runs the store's watcher until ctx ends, restarting it after
// errors with a bounded backoff.
func (a *App) watch(ctx context.Context, w Watcher, ws *watchState, done chan<- struct{}) {
	defer close(done)
	backoff := 100 * time.Millisecond
	for {
		// Store tenants of the snapshot when the watch starts: those the
		// store's initial values do not report are gone from the store.
		before := map[string]bool{}
		a.reg.Snapshot().RangeTenants(func(t *Tenant) bool {
			if t.Source == SourceStore {
				before[t.Name] = true
			}
			return true
		})
		seen := map[string]bool{}
		initial := true
		started := time.Now()
		err := w.Watch(ctx, func(c Change) {
			if c.Revision > ws.rev.Load() {
				ws.rev.Store(c.Revision)
			}
			if c.Ready {
				ws.ready.Store(true)
				if initial {
					for name := range seen {
						delete(before, name)
					}
					a.pruneMissing(before)
				}
				initial = false
				seen = nil
				return
			}
			if initial && c.Tenant != nil {
				seen[c.Name] = true
			}
			a.applyRemote(c)
		})
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > time.Minute {
			backoff = 100 * time.Millisecond // it had been working
		}
		a.logger.Warn("tenant store watch stopped; restarting", zap.Error(err), zap.Duration("after", backoff))
		mWatchRestarts.Inc()
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// applyRemote applies one change seen in a shared store, with the
// validation of a local change. Config tenants win over store tenants.
func (a *App) applyRemote(c Change) {
	log := a.logger.With(zap.String("tenant", c.Name), zap.Uint64("revision", c.Revision))
	if !ValidLabel(c.Name) {
		log.Warn("stored tenant change skipped", zap.String("reason", "invalid tenant name"))
		a.metrics.storeChange("skipped")
		return
	}
	a.reg.mu.Lock()
	defer a.reg.mu.Unlock()
	cur := a.reg.Snapshot()
	old, exists := cur.Tenant(c.Name)
	if exists && old.Source == SourceConfig {
		log.Warn("stored tenant change skipped", zap.String("reason", "a tenant of that name is defined in the Caddy config"))
		a.metrics.storeChange("skipped")
		return
	}
	if c.Tenant == nil {
		if !exists {
			a.metrics.storeChange("unchanged")
			return
		}
		next := cur.remove(c.Name)
		a.reg.cur.Store(next)
		a.metrics.size(next)
		log.Info("stored tenant deleted")
		a.metrics.storeChange("deleted")
		return
	}
	if exists && sameConfig(old.Config, c.Tenant) {
		a.metrics.storeChange("unchanged") // our own write, or a replay
		return
	}
	t, err := a.g.compileTenant(c.Name, SourceStore, c.Tenant)
	if err != nil {
		log.Warn("stored tenant change skipped", zap.String("reason", err.Error()))
		a.metrics.storeChange("skipped")
		return
	}
	next, err := cur.put(t)
	if err != nil {
		log.Warn("stored tenant change skipped", zap.String("reason", err.Error()))
		a.metrics.storeChange("skipped")
		return
	}
	a.reg.cur.Store(next)
	a.metrics.size(next)
	log.Info("stored tenant applied")
	a.metrics.storeChange("applied")
}

// pruneMissing removes the given store tenants (those the store no longer
// had when a watch started).
func (a *App) pruneMissing(gone map[string]bool) {
	for name := range gone {
		a.applyRemote(Change{Name: name})
	}
}

// SameConfig reports whether two tenant configurations are equal (as JSON).
func SameConfig(x, y *TenantConfig) bool { return sameConfig(x, y) }

func sameConfig(x, y *TenantConfig) bool {
	bx, err1 := json.Marshal(x)
	by, err2 := json.Marshal(y)
	return err1 == nil && err2 == nil && bytes.Equal(bx, by)
}

// watchState tells how far the watch of a shared store got.
type watchState struct {
	rev   atomic.Uint64 // last store revision reported
	ready atomic.Bool   // the initial values were reported
}

// startWatch starts watching a shared store (if the store is one).
func (a *App) startWatch() {
	w, ok := a.store.(Watcher)
	if !ok || a.watchCancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(a.ctx)
	done := make(chan struct{})
	a.watchCancel, a.watchDone = cancel, done
	ws := a.ws
	if ws == nil { // apps built without Provision (tests)
		ws = new(watchState)
	}
	go a.watch(ctx, w, ws, done)
}

// stopWatch stops the watcher and waits for it.
func (a *App) stopWatch() {
	if a.watchCancel == nil {
		return
	}
	a.watchCancel()
	select {
	case <-a.watchDone:
	case <-time.After(5 * time.Second):
		a.logger.Warn("tenant store watch did not stop in 5s")
	}
	a.watchCancel = nil
}

func storeErr(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("store: %w", err)
}
