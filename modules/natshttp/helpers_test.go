package natshttp

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/standard"
	"github.com/nats-io/nats-server/v2/server"

	_ "github.com/projectneo/caddy-neo/modules/echo"
	"github.com/projectneo/caddy-neo/modules/natsconn"
)

func init() {
	caddy.RegisterModule(testRoute{})
	caddy.RegisterModule(testTrailers{})
	caddy.RegisterModule(testPanic{})
}

// testPanic panics: before writing anything, or (?late) after sending the
// head and some body.
type testPanic struct{}

func (testPanic) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.neo_test_panic", New: func() caddy.Module { return new(testPanic) }}
}

func (testPanic) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	q := r.URL.Query()
	if q.Has("late") || q.Has("abort") {
		w.WriteHeader(200)
		_, _ = w.Write([]byte("partial"))
		_ = http.NewResponseController(w).Flush()
	}
	if q.Has("abort") {
		panic(http.ErrAbortHandler) // as the reverse proxy does when its upstream fails mid-body
	}
	panic("test handler panic")
}

// testTrailers reads the body, answers with the request trailer X-Checksum
// and the names of all request trailers that have a value in the body, and
// sends the response trailers Neo-Resp-Sum (announced) and Neo-Late
// (unannounced).
type testTrailers struct{}

func (testTrailers) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.neo_test_trailers", New: func() caddy.Module { return new(testTrailers) }}
}

func (testTrailers) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	n, _ := io.Copy(io.Discard, r.Body)
	w.Header().Set("Trailer", "Neo-Resp-Sum")
	w.WriteHeader(200)
	var names []string
	for k, vv := range r.Trailer {
		if len(vv) > 0 {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	fmt.Fprintf(w, "bytes=%d checksum=%s trailers=%s", n, r.Trailer.Get("X-Checksum"), strings.Join(names, ","))
	w.Header().Set("Neo-Resp-Sum", "xyz")
	w.Header().Set(http.TrailerPrefix+"Neo-Late", "late")
	return nil
}

// testRoute stands in for the registry's neo_route: it publishes
// {neo.tenant}, {neo.stage}, {neo.app}, {neo.zone} from the X-Test-* request
// headers (defaults acme, prod, orders, az-a; zone "none" leaves it unset).
type testRoute struct{}

func (testRoute) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.neo_test_route", New: func() caddy.Module { return new(testRoute) }}
}

func (testRoute) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	for _, kv := range [][3]string{{"neo.tenant", "X-Test-Tenant", "acme"}, {"neo.stage", "X-Test-Stage", "prod"}, {"neo.app", "X-Test-App", "orders"}, {"neo.zone", "X-Test-Zone", "az-a"}} {
		v := kv[2]
		if vv, ok := r.Header[kv[1]]; ok {
			v = vv[0]
		}
		if v != "none" {
			repl.Set(kv[0], v)
		}
	}
	return next.ServeHTTP(w, r)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startNATS runs a real nats-server on a random loopback port.
func startNATS(t testing.TB, maxPayload int32) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, MaxPayload: maxPayload, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// bigHeadValue is the value of the 16 KiB response header the stage's
// /orders/bighead route sets.
var bigHeadValue = strings.Repeat("b", 16<<10)

// topo describes an in-process edge + gateways configuration.
type topo struct {
	natsURL   string
	edgePort  int
	stagePort int
	gateways  []map[string]any
	transport map[string]any
	marker    string // makes configs differ for reload tests
	// wsReplica, when set, is the address of a replica the stage server
	// proxies /ws/* to (WebSocket tests)
	wsReplica string
}

func (tp topo) json(t testing.TB) []byte {
	transport := map[string]any{"protocol": "neo_nats", "zones": []string{"az-a", "az-b"}, "response_header_timeout": "5s", "chunk_timeout": "5s"}
	for k, v := range tp.transport {
		transport[k] = v
	}
	cfg := map[string]any{
		"admin":   map[string]any{"disabled": true},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}},
		"apps": map[string]any{
			"neo_nats": map[string]any{"connections": map[string]any{"default": map[string]any{"servers": []string{tp.natsURL}}}},
			"http": map[string]any{"servers": map[string]any{
				"edge": map[string]any{
					"listen": []string{fmt.Sprintf("127.0.0.1:%d", tp.edgePort)},
					"routes": []any{map[string]any{"handle": []any{
						map[string]any{"handler": "vars", "marker": tp.marker},
						map[string]any{"handler": "neo_test_route"},
						map[string]any{"handler": "reverse_proxy", "upstreams": []any{map[string]any{"dial": "nats:0"}}, "transport": transport},
					}}},
					"automatic_https": map[string]any{"disable": true},
				},
				"stage": map[string]any{
					"listen": []string{fmt.Sprintf("127.0.0.1:%d", tp.stagePort)},
					"routes": append(tp.wsRoutes(), []any{
						map[string]any{"match": []any{map[string]any{"path": []string{"/trailers"}}}, "handle": []any{map[string]any{"handler": "neo_test_trailers"}}},
						map[string]any{"match": []any{map[string]any{"path": []string{"/panic"}}}, "handle": []any{map[string]any{"handler": "neo_test_panic"}}},
						// not terminal: the echo route below answers
						map[string]any{"match": []any{map[string]any{"path": []string{"/orders/bighead"}}}, "handle": []any{
							map[string]any{"handler": "headers", "response": map[string]any{"set": map[string]any{"Neo-Big": []string{bigHeadValue}}}},
						}},
						map[string]any{"handle": []any{
							map[string]any{"handler": "neo_echo", "replica": "r1", "max_response_bytes": 200 << 20},
						}}}...),
					"automatic_https": map[string]any{"disable": true},
				},
			}},
			"neo_nats_gateway": map[string]any{"gateways": tp.gateways},
		},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gw(zone string) map[string]any {
	return map[string]any{"server": "stage", "stage": "prod", "zone": zone, "drain_timeout": "5s"}
}

func load(t testing.TB, tp topo) {
	t.Helper()
	if err := caddy.Load(tp.json(t), true); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	// A reload closes the old servers' idle keep-alive connections; a
	// request that picked one of them at that moment would read EOF.
	http.DefaultClient.CloseIdleConnections()
}

func newTopo(t testing.TB, s *server.Server) topo {
	t.Cleanup(func() { _ = caddy.Stop() })
	return topo{natsURL: s.ClientURL(), edgePort: freePort(t), stagePort: freePort(t), gateways: []map[string]any{gw("az-a"), gw("az-b")}}
}

func (tp topo) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", tp.edgePort, path)
}

func loadRaw(cfg []byte) error {
	err := caddy.Load(cfg, true)
	http.DefaultClient.CloseIdleConnections() // as in load
	return err
}

func startNATSPort(t testing.TB, port int) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// flushActive round-trips the running config's default connection, so the
// server has processed everything sent on it before.
func flushActive(t testing.TB) {
	t.Helper()
	app, err := caddy.ActiveContext().App("neo_nats")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := app.(*natsconn.App).Conn("")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// wsRoutes proxies /ws/* on the stage server to tp.wsReplica.
func (tp topo) wsRoutes() []any {
	if tp.wsReplica == "" {
		return nil
	}
	return []any{map[string]any{
		"match":    []any{map[string]any{"path": []string{"/ws/*"}}},
		"handle":   []any{map[string]any{"handler": "reverse_proxy", "upstreams": []any{map[string]any{"dial": tp.wsReplica}}}},
		"terminal": true,
	}}
}

// metricValue is the value of a metric's series whose label has the given
// value, as the active configuration's metrics registry exposes it; -1 when
// it has none.
func metricValue(t testing.TB, name, label, value string) float64 {
	t.Helper()
	ctx := caddy.ActiveContext()
	mfs, err := ctx.GetMetricsRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					if m.GetGauge() != nil {
						return m.GetGauge().GetValue()
					}
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}
