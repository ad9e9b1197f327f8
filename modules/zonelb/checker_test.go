package zonelb

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/projectneo/caddy-neo/internal/clock"
)

// fakeCheckClock paces the checkers of this test with a fake clock.
func fakeCheckClock(t *testing.T) *clock.Fake {
	f := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	old := checkClock
	checkClock = f
	t.Cleanup(func() { checkClock = old })
	return f
}

// waitChecks waits until c has run at least n checks (each check is a real
// HTTP request to a real server; only the interval between them is fake).
func waitChecks(t *testing.T, c *Checker, n uint64) {
	t.Helper()
	for i := 0; c.Checks() < n; i++ {
		if i == 60000 { // a minute of polling: the checker is stuck
			t.Fatalf("checker ran %d checks, want %d", c.Checks(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// tick moves the fake clock one interval and waits for the check it causes.
func tick(t *testing.T, f *clock.Fake, c *Checker) {
	t.Helper()
	n := c.Checks()
	f.Advance(time.Duration(c.cfg.Interval))
	waitChecks(t, c, n+1)
}

func TestCheckerFollowsReplica(t *testing.T) {
	f := fakeCheckClock(t)
	var status atomic.Int32
	status.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			t.Errorf("checked %s", r.URL.Path)
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	cfg := CheckConfig{Path: "/healthz", Interval: caddy.Duration(time.Second), Timeout: caddy.Duration(time.Second), Fails: 2, Passes: 2}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	set := NewCheckerSet(cfg)
	if !set.Healthy(addr) {
		t.Fatal("a replica is healthy until checked otherwise")
	}
	v, _ := set.byAddr.Load(addr)
	c := v.(*Checker)
	waitChecks(t, c, 1) // the first check runs at once
	if !c.Healthy() {
		t.Fatal("unhealthy after a passed check")
	}
	// health_fails 2: one failed check is not enough, two in a row are
	status.Store(503)
	tick(t, f, c)
	if !set.Healthy(addr) {
		t.Fatal("unhealthy after one failed check of health_fails 2")
	}
	tick(t, f, c)
	if set.Healthy(addr) {
		t.Fatal("healthy after two failed checks of health_fails 2")
	}
	// health_passes 2, likewise
	status.Store(200)
	tick(t, f, c)
	if set.Healthy(addr) {
		t.Fatal("healthy after one passed check of health_passes 2")
	}
	tick(t, f, c)
	if !set.Healthy(addr) {
		t.Fatal("unhealthy after two passed checks of health_passes 2")
	}

	// A second config shares the checker (one goroutine per address).
	set2 := NewCheckerSet(cfg)
	set2.Healthy(addr)
	c2, _ := set2.byAddr.Load(addr)
	if c2 != c {
		t.Fatal("two configs checking the same replica the same way run two checkers")
	}
	// Releasing one keeps it running; releasing both stops it.
	set.Close()
	tick(t, f, c)
	if n, _ := f.Tickers(); n != 1 {
		t.Fatalf("%d checkers running while a config still uses one", n)
	}
	set2.Close() // returns when the checker has stopped
	if n, _ := f.Tickers(); n != 0 {
		t.Fatalf("%d checkers still running after their last user released them", n)
	}
	before := c.Checks()
	f.Advance(10 * time.Duration(cfg.Interval))
	if c.Checks() != before {
		t.Fatal("a released checker checked again")
	}
}

func TestCheckerDownReplica(t *testing.T) {
	f := fakeCheckClock(t)
	cfg := CheckConfig{Path: "/", Interval: caddy.Duration(time.Second), Timeout: caddy.Duration(time.Second)}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	set := NewCheckerSet(cfg)
	defer set.Close()
	set.Healthy("127.0.0.1:1") // nothing listens on port 1
	v, _ := set.byAddr.Load("127.0.0.1:1")
	c := v.(*Checker)
	waitChecks(t, c, 1)
	if set.Healthy("127.0.0.1:1") {
		t.Fatal("a replica that refuses connections stays healthy")
	}
	tick(t, f, c)
	if set.Healthy("127.0.0.1:1") {
		t.Fatal("a replica that refuses connections became healthy")
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
