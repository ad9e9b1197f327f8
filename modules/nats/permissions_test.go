package neonats

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

var natsUsers = []string{"edge", "platform", "gw-prod", "gw-dev", "gw-prod-acme", "monitor"}

// startProductionNATS runs the real nats-server with caddyfiles/nats/nats-server.conf
// on a random port.
func startProductionNATS(t *testing.T) *server.Server {
	for _, u := range natsUsers {
		t.Setenv("NEO_NATS_"+strings.ToUpper(strings.ReplaceAll(u, "-", "_"))+"_PASSWORD", "pw-"+u)
	}
	opts, err := server.ProcessConfigFile("../../caddyfiles/nats/nats-server.conf")
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", -1, true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

type permConn struct {
	nc   *nats.Conn
	mu   sync.Mutex
	errs []string
}

func connectAs(t *testing.T, s *server.Server, user, inbox string) *permConn {
	pc := &permConn{}
	opts := []nats.Option{nats.UserInfo(user, "pw-"+user), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		pc.mu.Lock()
		pc.errs = append(pc.errs, err.Error())
		pc.mu.Unlock()
	})}
	if inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(inbox))
	}
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("%s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	pc.nc = nc
	return pc
}

// denied reports whether subscribing (or publishing) is refused by the server.
func (pc *permConn) denied(t *testing.T, op, subject string) bool {
	pc.mu.Lock()
	pc.errs = nil
	pc.mu.Unlock()
	switch op {
	case "sub":
		sub, err := pc.nc.SubscribeSync(subject)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
	case "pub":
		if err := pc.nc.Publish(subject, nil); err != nil {
			t.Fatal(err)
		}
	}
	_ = pc.nc.Flush()
	time.Sleep(30 * time.Millisecond)
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for _, e := range pc.errs {
		if strings.Contains(strings.ToLower(e), "permissions violation") {
			return true
		}
	}
	return false
}

func TestProductionPermissions(t *testing.T) {
	s := startProductionNATS(t)
	if _, err := nats.Connect(s.ClientURL()); err == nil {
		t.Fatal("anonymous connection accepted")
	}
	if _, err := nats.Connect(s.ClientURL(), nats.UserInfo("edge", "wrong")); err == nil {
		t.Fatal("wrong password accepted")
	}
	cases := []struct {
		user, op, subject string
		denied            bool
	}{
		{"edge", "pub", "neo.rt.prod.az-a.acme.orders", false},
		{"edge", "pub", "_GW.prod.x.1", false},
		{"edge", "sub", "_EDGE.x.*", false},
		{"edge", "sub", "neo.rt.>", true},
		{"edge", "sub", "neo.rt.prod.az-a.acme.orders", true},
		{"edge", "sub", "_GW.>", true},
		{"platform", "sub", "_EDGE.>", true},
		{"gw-prod", "sub", "neo.rt.prod.az-a.>", false},
		{"gw-prod", "sub", "neo.rt.prod.>", false},
		{"gw-prod", "sub", "neo.rt.dev.az-a.>", true},
		{"gw-prod", "sub", "neo.rt.>", true},
		{"gw-prod", "sub", "_GW.dev.>", true},
		{"gw-prod", "sub", "_EDGE.>", true},
		{"gw-prod", "pub", "neo.rt.prod.az-a.acme.orders", true},
		{"gw-prod", "pub", "_EDGE.x.1", false},
		{"gw-dev", "sub", "neo.rt.prod.az-a.>", true},
		{"gw-dev", "sub", "neo.rt.dev.az-b.>", false},
		{"gw-prod-acme", "sub", "neo.rt.prod.az-a.acme.>", false},
		{"gw-prod-acme", "sub", "neo.rt.prod.az-b.acme.orders", false},
		{"gw-prod-acme", "sub", "neo.rt.prod.az-a.globex.>", true},
		{"gw-prod-acme", "sub", "neo.rt.prod.az-a.>", true},
		{"gw-prod-acme", "sub", "neo.rt.prod.*.*.>", true},
		{"gw-prod-acme", "sub", "neo.rt.dev.az-a.acme.>", true},
		{"gw-prod-acme", "sub", "_GW.prod.>", true},
		{"monitor", "sub", "neo.rt.>", true},
	}
	conns := map[string]*permConn{}
	for _, u := range natsUsers {
		conns[u] = connectAs(t, s, u, "")
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s %s %s", c.user, c.op, c.subject), func(t *testing.T) {
			pc := conns[c.user]
			if got := pc.denied(t, c.op, c.subject); got != c.denied {
				t.Fatalf("denied=%v, want %v", got, c.denied)
			}
		})
	}
}

// TestProductionPermissionsEndToEnd runs the edge, a prod gateway and an
// acme-only gateway with their production users: requests flow, and the
// tenant gateway only ever sees its tenant.
func TestProductionPermissionsEndToEnd(t *testing.T) {
	s := startProductionNATS(t)
	t.Cleanup(func() { _ = caddy.Stop() })
	edge, stage := freePort(t), freePort(t)
	url := s.ClientURL()
	cfg := fmt.Sprintf(`{"admin":{"disabled":true},"logging":{"logs":{"default":{"level":"ERROR"}}},"apps":{
	"neo_nats":{"connections":{
	  "edge":{"servers":[%[1]q],"user":"edge","password":"pw-edge","inbox_prefix":"_EDGE"},
	  "gw":{"servers":[%[1]q],"user":"gw-prod-acme","password":"pw-gw-prod-acme","inbox_prefix":"_GW.prod-acme"}}},
	"neo_nats_gateway":{"gateways":[{"connection":"gw","server":"stage","stage":"prod","zone":"az-a","tenant":"acme"}]},
	"http":{"servers":{
	 "edge":{"listen":["127.0.0.1:%[2]d"],"automatic_https":{"disable":true},"routes":[{"handle":[{"handler":"neo_test_route"},{"handler":"reverse_proxy","upstreams":[{"dial":"nats:0"}],"transport":{"protocol": "neo_nats","connection":"edge"}}]}]},
	 "stage":{"listen":["127.0.0.1:%[3]d"],"automatic_https":{"disable":true},"routes":[{"handle":[{"handler":"neo_echo","replica":"acme-only"}]}]}}}}}`,
		url, edge, stage)
	if err := caddy.Load([]byte(cfg), true); err != nil {
		t.Fatal(err)
	}
	get := func(tenant string) int {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/x", edge), nil)
		req.Header.Set("X-Test-Tenant", tenant)
		resp, body := do(t, nil, req)
		if resp.StatusCode == 200 && report(t, body).NeoHeaders["Neo-Tenant"][0] != "acme" {
			t.Fatalf("tenant gateway served %s", body)
		}
		return resp.StatusCode
	}
	if code := get("acme"); code != 200 {
		t.Fatalf("acme through the tenant gateway: %d", code)
	}
	if code := get("globex"); code != 503 {
		t.Fatalf("globex has no gateway: %d, want 503", code)
	}
}
