package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/projectneo/caddy-neo/integration/harness"
	"github.com/projectneo/caddy-neo/internal/adapttest"
	"github.com/projectneo/caddy-neo/internal/natstest"
	"github.com/projectneo/caddy-neo/modules/ratelimit"
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

// Issue 16: the per-host zone counts the canonical host the tenant router
// resolves, not the Host header's spelling: upper and mixed case, with and
// without the port, over HTTP/1.1 and HTTP/2, are one count; the tenant's
// other stage has its own. (A trailing dot never reaches the limiter over
// TLS: strict SNI answers 421; modules/ratelimit's TestHostSpellingsCountedTogether
// covers it over plain HTTP.)
func TestEdgeRateLimitHostSpellings(t *testing.T) {
	inst, _ := startLocal(t, "NEO_RL_CLIENT_EVENTS=100000", "NEO_RL_HOST_EVENTS=6")
	body := `{"apps":{"crm":{"public":true,"stages":{"dev":{"replicas":[{"address":"127.0.0.1:9111","zone":"az-a"}]},"prod":{"replicas":[{"address":"127.0.0.1:9121","zone":"az-a"}]}}}}}`
	if st, out, _ := inst.Admin("PUT", "/neo/tenants/spell", body); st != 200 && st != 201 {
		t.Fatalf("PUT spell: %d %s", st, out)
	}
	roots, err := inst.RootPool("local")
	if err != nil {
		t.Fatal(err)
	}
	h1 := harness.Client("127.0.0.1:8443", roots)
	h1.Transport.(*http.Transport).ForceAttemptHTTP2 = false
	h1.Transport.(*http.Transport).TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	h2 := harness.Client("127.0.0.1:8443", roots)
	send := func(c *http.Client, name, host string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://"+name+":8443/crm/x", nil)
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Proto
	}
	const name = "spell-dev.apps.localhost"
	spellings := []struct {
		c    *http.Client
		host string
	}{
		{h1, "spell-dev.apps.localhost:8443"}, {h1, "SPELL-DEV.APPS.LOCALHOST:8443"}, {h1, "Spell-Dev.Apps.Localhost"},
		{h2, "spell-dev.apps.localhost"}, {h2, "sPeLL-dEv.apps.localhost:8443"}, {h2, "SPELL-dev.apps.LOCALHOST"},
	}
	protos := map[string]bool{}
	for _, s := range spellings {
		st, proto := send(s.c, name, s.host)
		if st != 200 {
			t.Fatalf("%s (%s): %d", s.host, proto, st)
		}
		protos[proto] = true
	}
	if !protos["HTTP/1.1"] || !protos["HTTP/2.0"] {
		t.Fatalf("protocols used: %v, want HTTP/1.1 and HTTP/2.0", protos)
	}
	for _, s := range spellings {
		if st, proto := send(s.c, name, s.host); st != http.StatusTooManyRequests {
			t.Fatalf("%s (%s) after 6 requests in 6 spellings (limit 6): %d, want 429", s.host, proto, st)
		}
	}
	if st, _ := send(h2, "spell.apps.localhost", "SPELL.apps.localhost"); st != 200 {
		t.Fatalf("the production stage of the same tenant: %d", st)
	}
}

// NEO_RL_DISTRIBUTED=on switches every edge rate limit to distributed mode
// (over the neo_nats connection NEO_RL_NATS_CONNECTION, synced every
// NEO_RL_SYNC_INTERVAL); unset, the edge counts alone.
func TestEdgeRateLimitDistributedSwitch(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want string // the distributed setting of every neo_rate_limit handler
	}{
		{nil, "null"},
		{map[string]string{"NEO_RL_DISTRIBUTED": "on"}, `{"connection":"default","interval":1000000000,"replicas":1}`},
		{map[string]string{"NEO_RL_DISTRIBUTED": "on", "NEO_RL_SYNC_INTERVAL": "250ms", "NEO_RL_REPLICAS": "3", "NEO_RL_NATS_CONNECTION": "edge"},
			`{"connection":"edge","interval":250000000,"replicas":3}`},
	} {
		t.Run(c.want, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			for _, file := range []string{"local.Caddyfile", "edge.Caddyfile"} {
				p := path.Join(harness.RepoRoot(), "caddyfiles", file)
				body, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				out, err := adapttest.Adapt(t, p, body)
				if err != nil {
					t.Fatal(err)
				}
				var cfg any
				if err := json.Unmarshal(out, &cfg); err != nil {
					t.Fatal(err)
				}
				var found []string
				var walk func(any)
				walk = func(o any) {
					switch o := o.(type) {
					case map[string]any:
						if o["handler"] == "neo_rate_limit" {
							b, _ := json.Marshal(o["distributed"])
							found = append(found, string(b))
						}
						for _, v := range o {
							walk(v)
						}
					case []any:
						for _, v := range o {
							walk(v)
						}
					}
				}
				walk(cfg)
				if len(found) == 0 {
					t.Fatalf("%s: no neo_rate_limit handler", file)
				}
				for _, f := range found {
					if f != c.want {
						t.Errorf("%s: neo_rate_limit distributed = %s; want %s", file, f, c.want)
					}
				}
			}
		})
	}
}

// Two edges (the built binary, the shipped snippet with NEO_RL_DISTRIBUTED=on)
// share the per-client limit through JetStream counters on a real
// nats-server: once synced, 15 requests on edge 1 leave exactly 5 on edge 2,
// then none on edge 1; the stream's counter is what both allowed.
func TestEdgeRateLimitDistributed(t *testing.T) {
	s := natstest.Start(t, -1, t.TempDir())
	globals := fmt.Sprintf("\tneo_nats {\n\t\tconnection default {\n\t\t\tservers %s\n\t\t}\n\t}", s.ClientURL())
	env := []string{"NEO_RL_DISTRIBUTED=on", "NEO_RL_SYNC_INTERVAL=100ms", "NEO_RL_CLIENT_EVENTS=20", "NEO_RL_CLIENT_WINDOW=1h"}
	e1, e2 := startEdgeWith(t, globals, env...), startEdgeWith(t, globals, env...)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	subject := func() string {
		win := time.Now().UnixNano() / int64(time.Hour)
		return fmt.Sprintf("%s.neo_client.%d.%s", ratelimit.DefaultSubject, win, ratelimit.WireKey("127.0.6.1"))
	}
	// synced waits until the client's counter in the stream is total (every
	// edge has sent its events), then until edge e has applied every update
	// in the stream up to that point.
	synced := func(e *edge, total int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			if str, err := js.Stream(context.Background(), ratelimit.DefaultStream); err == nil {
				msg, err := str.GetLastMsgForSubject(context.Background(), subject())
				if err == nil && string(msg.Data) == fmt.Sprintf(`{"val":"%d"}`, total) {
					info, err := str.Info(context.Background())
					if err == nil && metric(t, e.inst, `caddy_neo_rate_limit_stream_seq{stream="NEO_RL"}`) >= float64(info.State.LastSeq) {
						return
					}
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("counter %s not %d and applied within 30s", subject(), total)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	count := func(e *edge, n int) (ok int) {
		c := e.client("127.0.6.1")
		u := e.url("acme-dev.apps.localhost", "/orders/")
		for range n {
			switch st, _ := get(t, c, u); st {
			case 200:
				ok++
			case http.StatusTooManyRequests:
			default:
				t.Fatalf("status %d", st)
			}
		}
		return ok
	}
	if ok := count(e1, 15); ok != 15 {
		t.Fatalf("edge 1 allowed %d of 15", ok)
	}
	synced(e2, 15)
	if ok := count(e2, 10); ok != 5 {
		t.Fatalf("edge 2 allowed %d of 10 after edge 1's 15; want 5 (limit 20 across both)", ok)
	}
	synced(e1, 20)
	if ok := count(e1, 5); ok != 0 {
		t.Fatalf("edge 1 allowed %d after the limit was used on both edges", ok)
	}
	// The counter is what both edges allowed: the 5 refused on edge 1 were
	// not counted.
	synced(e1, 20)
}
