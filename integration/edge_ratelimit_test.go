package integration

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

func get(t *testing.T, c *http.Client, u string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("User-Agent", "Mozilla/5.0 caddy-neo-test")
	status, hdr, _ := do(t, c, req)
	return status, hdr
}

func TestEdgeRateLimitPerClient(t *testing.T) {
	e := startEdge(t, "NEO_RL_CLIENT_EVENTS=20", "NEO_RL_CLIENT_WINDOW=1m")
	flooder, other := e.client("127.0.0.2"), e.client("127.0.0.3")
	u := e.url("acme-dev.apps.localhost", "/orders/")
	limited := 0
	for i := 0; i < 30; i++ {
		status, hdr := get(t, flooder, u)
		switch status {
		case 200:
			if limited > 0 {
				t.Fatalf("request %d passed after the limit was hit", i)
			}
		case http.StatusTooManyRequests:
			limited++
			if s, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || s < 1 {
				t.Fatalf("429 without a valid Retry-After: %q", hdr.Get("Retry-After"))
			}
		default:
			t.Fatalf("status %d", status)
		}
	}
	if limited != 10 {
		t.Fatalf("%d of 30 requests limited, want 10 (limit 20)", limited)
	}
	// Another client address is unaffected.
	if status, _ := get(t, other, u); status != 200 {
		t.Fatalf("another client got %d", status)
	}
}

func TestEdgeRateLimitPerTenantHost(t *testing.T) {
	e := startEdge(t, "NEO_RL_HOST_EVENTS=40", "NEO_RL_HOST_WINDOW=1m")
	// acme is flooded from many client addresses (each under its own limit).
	var flood []*http.Client
	for i := 10; i < 20; i++ {
		flood = append(flood, e.client("127.0.1."+strconv.Itoa(i)))
	}
	acme := e.url("acme-dev.apps.localhost", "/orders/")
	limited := 0
	for i := 0; i < 60; i++ {
		if status, _ := get(t, flood[i%len(flood)], acme); status == http.StatusTooManyRequests {
			limited++
		}
	}
	// startEdge's readiness check spent one of acme's 40.
	if limited != 21 {
		t.Fatalf("acme: %d of 60 requests limited, want 21 (limit 40, one spent at start)", limited)
	}
	// globex's clients, some on the same addresses, are unaffected.
	globex := e.url("globex-dev.apps.localhost", "/shop/")
	for i := 0; i < 20; i++ {
		if status, _ := get(t, flood[i%len(flood)], globex); status != 200 {
			t.Fatalf("globex request %d during acme's flood: %d", i, status)
		}
	}
}

func TestEdgeLoginBruteForce(t *testing.T) {
	e := startEdge(t, "NEO_RL_LOGIN_EVENTS=5", "NEO_RL_LOGIN_WINDOW=5m")
	login := e.url("acme-dev.apps.localhost", "/identity/login")
	try := func(c *http.Client, user string) int {
		req, _ := http.NewRequest("POST", login, strings.NewReader(url.Values{"username": {user}, "password": {"guess"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("User-Agent", "Mozilla/5.0 caddy-neo-test")
		status, _, _ := do(t, c, req)
		return status
	}
	// One address guessing many users: stopped after 5 attempts.
	attacker := e.client("127.0.2.1")
	for i := 0; i < 8; i++ {
		status := try(attacker, "user"+strconv.Itoa(i))
		if (i < 5) != (status != http.StatusTooManyRequests) {
			t.Fatalf("attempt %d from one address: status %d", i+1, status)
		}
	}
	// Many addresses guessing one user's password: stopped after 5 attempts.
	for i := 0; i < 8; i++ {
		status := try(e.client("127.0.3."+strconv.Itoa(i+1)), "Alice")
		if (i < 5) != (status != http.StatusTooManyRequests) {
			t.Fatalf("attempt %d on alice from a new address: status %d", i+1, status)
		}
	}
	// Another user from a fresh address can still sign in.
	if status := try(e.client("127.0.4.1"), "bob"); status == http.StatusTooManyRequests {
		t.Fatal("bob was limited by the attack on alice")
	}
}
