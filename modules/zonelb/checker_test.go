package zonelb

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func TestCheckerFollowsReplica(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			t.Errorf("checked %s", r.URL.Path)
		}
		hits.Add(1)
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	cfg := CheckConfig{Path: "/healthz", Interval: caddy.Duration(20 * time.Millisecond), Timeout: caddy.Duration(10 * time.Millisecond)}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	set := NewCheckerSet(cfg)
	waitFor := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for set.Healthy(addr) != want {
			if time.Now().After(deadline) {
				t.Fatalf("replica never became healthy=%v", want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(true)
	status.Store(503)
	waitFor(false)
	status.Store(200)
	waitFor(true)

	// A second config shares the checker (one goroutine per address).
	set2 := NewCheckerSet(cfg)
	set2.Healthy(addr)
	c1, _ := set.byAddr.Load(addr)
	c2, _ := set2.byAddr.Load(addr)
	if c1 != c2 {
		t.Fatal("two configs checking the same replica the same way run two checkers")
	}
	// Releasing one keeps it running; releasing both stops it.
	set.Close()
	before := hits.Load()
	time.Sleep(100 * time.Millisecond)
	if hits.Load() == before {
		t.Fatal("checker stopped while another config still uses it")
	}
	set2.Close()
	time.Sleep(50 * time.Millisecond)
	stopped := hits.Load()
	time.Sleep(100 * time.Millisecond)
	if hits.Load() != stopped {
		t.Fatal("checker still running after its last user released it")
	}
}

func TestCheckerDownReplica(t *testing.T) {
	cfg := CheckConfig{Path: "/", Interval: caddy.Duration(20 * time.Millisecond), Timeout: caddy.Duration(10 * time.Millisecond)}
	cfg.Validate()
	set := NewCheckerSet(cfg)
	defer set.Close()
	deadline := time.Now().Add(2 * time.Second)
	for set.Healthy("127.0.0.1:1") { // nothing listens on port 1
		if time.Now().After(deadline) {
			t.Fatal("a replica that refuses connections stays healthy")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCheckConfigValidate(t *testing.T) {
	for _, c := range []CheckConfig{
		{Path: "healthz"},
		{Path: "/", Interval: caddy.Duration(time.Millisecond)},
		{Path: "/", Timeout: caddy.Duration(time.Minute)},
		{Path: "/", Status: 42},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	var off *CheckerSet
	if !off.Healthy("x") || !NewCheckerSet(CheckConfig{}).Healthy("x") {
		t.Fatal("checks off must report healthy")
	}
}
