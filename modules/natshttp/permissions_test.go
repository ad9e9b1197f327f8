package natshttp

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/projectneo/caddy-neo/internal/route"
	"github.com/projectneo/caddy-neo/modules/echo"
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
	case "qsub": // in the gateways' queue group
		sub, err := pc.nc.QueueSubscribeSync(subject, "neo-gateway")
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
		{"edge", "pub", route.Subject{Stage: "prod", Zone: "az-a", Tenant: "acme", App: "orders"}.Build(), false},
		{"edge", "pub", "_GW.prod.x.1", false},
		{"edge", "sub", "_EDGE.x.*", false},
		{"edge", "sub", route.All, true},
		{"edge", "sub", route.Subject{Stage: "prod", Zone: "az-a", Tenant: "acme", App: "orders"}.Build(), true},
		{"edge", "sub", "_GW.>", true},
		{"platform", "sub", "_EDGE.>", true},
		// request heads: only in the queue group, so no gateway gets a
		// copy of a head given to another
		{"gw-prod", "qsub", route.Pattern("prod", "az-a", ""), false},
		{"gw-prod", "qsub", route.Prefix + "prod.>", false},
		{"gw-prod", "sub", route.Pattern("prod", "az-a", ""), true},
		{"gw-prod", "sub", route.Prefix + "prod.>", true},
		{"gw-prod", "qsub", route.Pattern("dev", "az-a", ""), true},
		{"gw-prod", "qsub", route.All, true},
		{"gw-prod", "sub", "_GW.dev.>", true},
		{"gw-prod", "sub", "_EDGE.>", true},
		{"gw-prod", "pub", route.Subject{Stage: "prod", Zone: "az-a", Tenant: "acme", App: "orders"}.Build(), true},
		// gateways publish only responses to what they were delivered
		{"gw-prod", "pub", "_EDGE.x.1", true},
		{"gw-prod", "pub", "_PLATFORM.x.1", true},
		{"gw-prod", "pub", "_GW.prod.x.1", true},
		{"gw-dev", "pub", "_EDGE.x.1", true},
		{"gw-prod-acme", "pub", "_EDGE.x.1", true},
		{"gw-prod-acme", "pub", "_PLATFORM.x.1", true},
		{"gw-dev", "qsub", route.Pattern("prod", "az-a", ""), true},
		{"gw-dev", "qsub", route.Pattern("dev", "az-b", ""), false},
		{"gw-dev", "sub", route.Pattern("dev", "az-b", ""), true},
		{"gw-prod-acme", "qsub", route.Pattern("prod", "az-a", "acme"), false},
		{"gw-prod-acme", "qsub", route.Subject{Stage: "prod", Zone: "az-b", Tenant: "acme", App: "orders"}.Build(), false},
		{"gw-prod-acme", "sub", route.Pattern("prod", "az-a", "acme"), true},
		{"gw-prod-acme", "qsub", route.Pattern("prod", "az-a", "globex"), true},
		{"gw-prod-acme", "qsub", route.Pattern("prod", "az-a", ""), true},
		{"gw-prod-acme", "qsub", route.Pattern("prod", "*", "*"), true},
		{"gw-prod-acme", "qsub", route.Pattern("dev", "az-a", "acme"), true},
		{"gw-prod-acme", "sub", "_GW.prod.>", true},
		{"monitor", "sub", route.All, true},
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

// gatewayFramesBetween is the most a gateway sends to an edge's reply
// subject beyond the edge's window before the edge sends its next frame
// (the response head, its inbox announcement, up to three credit frames for
// a request body, a probe answer, an error): allow_responses' max must be at
// least the edges' window plus this.
const gatewayFramesBetween = 7

// TestProductionResponsePermissions checks the gateways' allow_responses in
// both production files against the protocol's needs: no static publish
// right on edge, platform or gateway inboxes, max at least the largest
// window a transport accepts plus what a gateway sends between two edge
// frames, and expires beyond the edges' default response_header_timeout
// (60s) and platform.Caddyfile's (100s).
func TestProductionResponsePermissions(t *testing.T) {
	for _, u := range natsUsers {
		t.Setenv("NEO_NATS_"+strings.ToUpper(strings.ReplaceAll(u, "-", "_"))+"_PASSWORD", "pw-"+u)
	}
	for _, file := range []string{"../../caddyfiles/nats/nats-server.conf", "../../caddyfiles/nats/cluster/authorization.conf"} {
		opts, err := server.ProcessConfigFile(file)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, u := range opts.Users {
			if !strings.HasPrefix(u.Username, "gw-") {
				continue
			}
			n++
			p := u.Permissions
			if p == nil || p.Response == nil || p.Publish == nil {
				t.Fatalf("%s: %s: no allow_responses", file, u.Username)
			}
			for _, a := range p.Publish.Allow {
				for _, subj := range []string{"_EDGE.x.y", "_PLATFORM.x.y", "_GW.x.y"} {
					if subjectMatches(a, subj) {
						t.Errorf("%s: %s may publish to %s (%q)", file, u.Username, subj, a)
					}
				}
			}
			if p.Response.MaxMsgs < maxWindow+gatewayFramesBetween {
				t.Errorf("%s: %s: allow_responses max %d < %d", file, u.Username, p.Response.MaxMsgs, maxWindow+gatewayFramesBetween)
			}
			if p.Response.Expires < 100*time.Second+headGrace {
				t.Errorf("%s: %s: allow_responses expires %v", file, u.Username, p.Response.Expires)
			}
		}
		if n != 3 {
			t.Fatalf("%s: %d gateway users", file, n)
		}
	}
}

// subjectMatches reports whether the subject pattern p matches subj.
func subjectMatches(p, subj string) bool {
	pt, st := strings.Split(p, "."), strings.Split(subj, ".")
	for i, t := range pt {
		if t == ">" {
			return len(st) > i
		}
		if i >= len(st) || (t != "*" && t != st[i]) {
			return false
		}
	}
	return len(pt) == len(st)
}

// TestProductionPermissionsEndToEnd runs the edge, a prod gateway and an
// acme-only gateway with their production users: requests flow, and the
// tenant gateway only ever sees its tenant. With 1 KiB chunks, a 2 MiB
// upload and download are more than 2000 frames each way: more than the
// gateways' allow_responses max, so they complete only because each frame of
// the edge gives the gateway a fresh reply subject.
func TestProductionPermissionsEndToEnd(t *testing.T) {
	s := startProductionNATS(t)
	t.Cleanup(func() { _ = caddy.Stop() })
	edge, stage := freePort(t), freePort(t)
	url := s.ClientURL()
	cfg := fmt.Sprintf(`{"admin":{"disabled":true},"logging":{"logs":{"default":{"level":"ERROR"}}},"apps":{
	"neo_nats":{"connections":{
	  "edge":{"servers":[%[1]q],"user":"edge","password":"pw-edge","inbox_prefix":"_EDGE"},
	  "gw":{"servers":[%[1]q],"user":"gw-prod-acme","password":"pw-gw-prod-acme","inbox_prefix":"_GW.prod-acme"}}},
	"neo_nats_gateway":{"gateways":[{"connection":"gw","server":"stage","stage":"prod","zone":"az-a","tenant":"acme","chunk_size":1024}]},
	"http":{"servers":{
	 "edge":{"listen":["127.0.0.1:%[2]d"],"automatic_https":{"disable":true},"routes":[{"handle":[{"handler":"neo_test_route"},{"handler":"reverse_proxy","upstreams":[{"dial":"nats:0"}],"transport":{"protocol": "neo_nats","connection":"edge","chunk_size":1024}}]}]},
	 "stage":{"listen":["127.0.0.1:%[3]d"],"automatic_https":{"disable":true},"routes":[{"handle":[{"handler":"neo_echo","replica":"acme-only","max_response_bytes":4194304}]}]}}}}}`,
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
	const size = 2 << 20
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/x", edge), chunkedReader{io.LimitReader(&echo.Filler{}, size)})
	req.Header.Set("X-Test-Tenant", "acme")
	resp, body := do(t, nil, req)
	if resp.StatusCode != 200 || report(t, body).BodySHA256 != fillerSHA(size) {
		t.Fatalf("upload: %d %.200s", resp.StatusCode, body)
	}
	req, _ = http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/x", edge), nil)
	req.Header.Set("X-Test-Tenant", "acme")
	req.Header.Set("Echo-Body-Bytes", strconv.Itoa(size))
	download(t, req, size)
}
