package neo

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// chanStore is a shared Store whose watch reports what the test sends.
// Each Watch call takes its channel from chans.
type chanStore struct {
	memStore
	chans chan chan Change
}

func (s *chanStore) Watch(ctx context.Context, apply func(Change)) error {
	var ch chan Change
	select {
	case <-ctx.Done():
		return nil
	case ch = <-s.chans:
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case c, ok := <-ch:
			if !ok {
				return errors.New("closed")
			}
			apply(c)
		}
	}
}

func oneApp(addr string) *TenantConfig {
	return &TenantConfig{Apps: map[string]*AppConfig{"crm": {Stages: map[string]*StageConfig{"prod": {Replicas: reps(addr)}}}}}
}

// TestWatchApply checks remote changes: applied like local ones, bad values
// and config-tenant names skipped with a log line, idempotent, and tenants
// the store no longer has pruned after the initial values.
func TestWatchApply(t *testing.T) {
	a := newTestApp(t, demoTenants())
	core, logs := observer.New(zap.InfoLevel)
	a.logger = zap.New(core)
	a.ctx = context.Background()
	if _, err := a.Put("stale", oneApp("10.0.0.9:80")); err != nil {
		t.Fatal(err)
	}
	st := &chanStore{chans: make(chan chan Change)}
	a.store = st
	a.startWatch()
	a.startWatch() // idempotent: one watcher
	ch := make(chan Change)
	st.chans <- ch
	send := func(c Change) { t.Helper(); ch <- c }
	send(Change{Name: "initech", Tenant: oneApp("10.0.0.1:80"), Revision: 1})
	// A local write after the watch started is not in its initial values
	// (its revision comes later): it must not be pruned.
	if _, err := a.Put("fresh", oneApp("10.0.0.5:80")); err != nil {
		t.Fatal(err)
	}
	send(Change{Ready: true})
	send(Change{Name: "globex", Tenant: oneApp("10.0.0.2:80"), Revision: 2}) // config tenant: skipped
	send(Change{Name: "bad", Tenant: &TenantConfig{Apps: map[string]*AppConfig{"crm": {Stages: map[string]*StageConfig{"qa": {}}}}}, Revision: 3})
	send(Change{Name: "Bad..", Tenant: oneApp("10.0.0.3:80"), Revision: 4})
	v := a.reg.Snapshot().Version()
	send(Change{Name: "initech", Tenant: oneApp("10.0.0.1:80"), Revision: 5}) // same: no new snapshot
	send(Change{Name: "initech", Tenant: oneApp("10.0.0.4:80"), Revision: 6})
	send(Change{Name: "absent", Revision: 7})
	select {
	case st.chans <- make(chan Change):
		t.Fatal("two watchers")
	case <-time.After(100 * time.Millisecond):
	}
	a.stopWatch()
	snap := a.reg.Snapshot()
	if _, ok := snap.Tenant("stale"); ok {
		t.Error("tenant missing from the store not pruned")
	}
	if _, ok := snap.Tenant("fresh"); !ok {
		t.Error("a tenant written during the initial values was pruned")
	}
	if reps, _ := snap.AppReplicas("initech", "crm", "prod"); len(reps) != 1 || reps[0].Address != "10.0.0.4:80" {
		t.Errorf("initech replicas %v", reps)
	}
	if g, _ := snap.Tenant("globex"); g.Source != SourceConfig {
		t.Error("a store tenant replaced a config tenant")
	}
	if _, ok := snap.Tenant("bad"); ok {
		t.Error("invalid tenant applied")
	}
	if snap.Version() != v+1 {
		t.Errorf("version %d, want %d (an unchanged tenant must not make a snapshot)", snap.Version(), v+1)
	}
	for _, name := range []string{"globex", "bad", "Bad.."} {
		if logs.FilterMessage("stored tenant change skipped").FilterField(zap.String("tenant", name)).Len() != 1 {
			t.Errorf("no skip log for %s: %v", name, logs.All())
		}
	}
	// A remote delete.
	a.startWatch()
	ch = make(chan Change)
	st.chans <- ch
	ch <- Change{Name: "initech", Revision: 8}
	a.stopWatch()
	if _, ok := a.reg.Snapshot().Tenant("initech"); ok {
		t.Error("remote delete not applied")
	}
}

// TestWatchRestart: a watch that fails is started again.
func TestWatchRestart(t *testing.T) {
	a := newTestApp(t, nil)
	a.ctx = context.Background()
	st := &chanStore{chans: make(chan chan Change)}
	a.store = st
	a.startWatch()
	defer a.stopWatch()
	ch := make(chan Change)
	st.chans <- ch
	close(ch)
	select {
	case st.chans <- make(chan Change):
	case <-time.After(5 * time.Second):
		t.Fatal("watch not restarted")
	}
}

// unavailableStore fails every write as unreachable.
type unavailableStore struct{ *memStore }

func (unavailableStore) Put(string, *TenantConfig) error {
	return errors.Join(ErrStoreUnavailable, errors.New("nats down"))
}

func TestAdminStoreUnavailable(t *testing.T) {
	a := newTestApp(t, nil)
	a.store = unavailableStore{&memStore{}}
	st, _, err := a.handleAdmin(http.MethodPut, []string{"tenants", "initech"}, []byte(`{}`))
	if st != http.StatusServiceUnavailable || err == nil {
		t.Fatalf("status %d %v", st, err)
	}
	if _, ok := a.reg.Snapshot().Tenant("initech"); ok {
		t.Fatal("change published although the store failed")
	}
	st, _, _ = a.handleAdmin(http.MethodGet, []string{"tenants", "initech", "history"}, nil)
	if st != http.StatusNotFound {
		t.Fatalf("history without a historian: %d", st)
	}
}

// conflictStore refuses every conditional write, as a shared store does
// when another node changed the tenant first.
type conflictStore struct{ *memStore }

func (conflictStore) PutIfUnchanged(name string, prev, t *TenantConfig, who Author) error {
	return ErrConflict
}

// TestPartialChangeConflict: a change to a part of a tenant made on a stale
// copy gets 409 and changes nothing.
func TestPartialChangeConflict(t *testing.T) {
	a := newTestApp(t, nil)
	if _, err := a.Put("initech", oneApp("10.0.0.1:80")); err != nil {
		t.Fatal(err)
	}
	// Stale locally.
	if err := a.PutIfUnchanged("initech", oneApp("10.0.0.9:80"), oneApp("10.0.0.2:80"), Author{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale local copy: %v", err)
	}
	if err := a.PutIfUnchanged("nobody", oneApp("10.0.0.9:80"), oneApp("10.0.0.2:80"), Author{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("deleted tenant: %v", err)
	}
	if err := a.PutIfUnchanged("initech", oneApp("10.0.0.1:80"), oneApp("10.0.0.2:80"), Author{}); err != nil {
		t.Fatalf("current copy: %v", err)
	}
	// Stale in the shared store.
	a.store = conflictStore{&memStore{}}
	st, _, err := a.handleAdmin(http.MethodPut, []string{"tenants", "initech", "apps", "crm", "stages", "prod", "replicas"}, []byte(`[{"address":"10.0.0.3:80"}]`))
	if st != http.StatusConflict || !errors.Is(err, ErrConflict) {
		t.Fatalf("status %d %v", st, err)
	}
	if reps, _ := a.reg.Snapshot().AppReplicas("initech", "crm", "prod"); len(reps) != 1 || reps[0].Address != "10.0.0.2:80" {
		t.Fatalf("a refused change was published: %v", reps)
	}
	// Whole-tenant writes stay unconditional (last writer wins).
	if st, _, err := a.handleAdmin(http.MethodPut, []string{"tenants", "initech"}, []byte(`{}`)); st != http.StatusOK {
		t.Fatalf("whole PUT: %d %v", st, err)
	}
}
