package neo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddytls"
)

func TestFileStore(t *testing.T) {
	dir := t.TempDir()
	s := &FileStore{Dir: filepath.Join(dir, "tenants")}
	if err := s.Provision(caddyCtx(t)); err != nil {
		t.Fatal(err)
	}
	tc := &TenantConfig{Apps: map[string]*AppConfig{"crm": {Stages: map[string]*StageConfig{"prod": {Replicas: reps("127.0.0.1:1")}}}}}
	if err := s.Put("initech", tc); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("../evil", tc); err == nil {
		t.Fatal("a path-like tenant name was accepted")
	}
	// Foreign and temporary files are ignored.
	os.WriteFile(filepath.Join(s.Dir, "README"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(s.Dir, ".initech.123.tmp"), []byte("{"), 0o600)
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["initech"].Apps["crm"].Stages["prod"].Replicas[0].Address != "127.0.0.1:1" {
		t.Fatalf("loaded %+v", got)
	}
	if err := s.Delete("initech"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("initech"); err != nil {
		t.Fatal("deleting an absent tenant:", err)
	}
	if got, _ := s.Load(); len(got) != 0 {
		t.Fatalf("after delete: %v", got)
	}
	// A corrupt tenant file is an error naming the file.
	os.WriteFile(filepath.Join(s.Dir, "broken.json"), []byte(`{"apps":1}`), 0o600)
	if _, err := s.Load(); err == nil || !strings.Contains(err.Error(), "broken.json") {
		t.Fatalf("corrupt file: %v", err)
	}
}

func TestPermission(t *testing.T) {
	a := newTestApp(t, demoTenants())
	p := &Permission{app: a}
	for name, want := range map[string]bool{
		"acme.apps.localhost": true, "acme-dev.apps.localhost": true, "ACME-DEV.apps.localhost": true,
		"acme.platform.localhost": true, "shop.acme.localhost": true, "globex-dev.apps.localhost": true,
		"nobody.apps.localhost": false, "acme-qa.apps.localhost": false, "apps.localhost": false,
		"evil.example.com": false, "x.acme.apps.localhost": false, "": false, "127.0.0.1": false,
	} {
		err := p.CertificateAllowed(context.Background(), name)
		if (err == nil) != want {
			t.Errorf("%q: %v, want allowed=%v", name, err, want)
		}
		if err != nil && !errors.Is(err, caddytls.ErrPermissionDenied) {
			t.Errorf("%q: error does not wrap ErrPermissionDenied: %v", name, err)
		}
	}
	// Pending domains get no certificate.
	tc := demoTenants()
	tc["acme"].Domains["shop.acme.localhost"].Pending = true
	p = &Permission{app: newTestApp(t, tc)}
	if p.CertificateAllowed(context.Background(), "shop.acme.localhost") == nil {
		t.Error("pending domain allowed")
	}
}

// TestConcurrentChanges runs readers against writers (run with -race): every
// resolution sees a complete tenant, old or new.
func TestConcurrentChanges(t *testing.T) {
	a := newTestApp(t, demoTenants())
	var wg sync.WaitGroup
	var stop atomic.Bool
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				s := a.reg.Snapshot()
				res, miss := s.Resolve(fmt.Sprintf("rt%d.apps.localhost", (i+r)%5), "/crm/")
				if miss != "" {
					continue
				}
				reps := res.Replicas()
				if len(reps) != 2 || reps[0].Address[len(reps[0].Address)-1] != reps[1].Address[len(reps[1].Address)-1] {
					t.Errorf("torn tenant: %v", reps)
					return
				}
				if res.Tenant.Name != fmt.Sprintf("rt%d", (i+r)%5) {
					t.Errorf("resolved %s", res.Tenant.Name)
					return
				}
			}
		}()
	}
	for i := range 500 {
		name := fmt.Sprintf("rt%d", i%5)
		if i%7 == 0 {
			a.Delete(name)
			continue
		}
		v := i % 10
		tc := &TenantConfig{Apps: map[string]*AppConfig{"crm": {Stages: map[string]*StageConfig{"prod": {Replicas: []Replica{
			{Address: fmt.Sprintf("10.0.0.1:80%d", v)}, {Address: fmt.Sprintf("10.0.0.2:80%d", v)},
		}}}}}}
		if _, err := a.Put(name, tc); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
}
