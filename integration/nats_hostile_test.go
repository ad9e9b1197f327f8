package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/projectneo/caddy-neo/integration/harness"
)

// natsLog captures a nats-server's log lines.
type natsLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *natsLog) add(level, format string, v ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, level+" "+fmt.Sprintf(format, v...))
	l.mu.Unlock()
}
func (l *natsLog) Noticef(f string, v ...any) { l.add("[INF]", f, v...) }
func (l *natsLog) Warnf(f string, v ...any)   { l.add("[WRN]", f, v...) }
func (l *natsLog) Fatalf(f string, v ...any)  { l.add("[FTL]", f, v...) }
func (l *natsLog) Errorf(f string, v ...any)  { l.add("[ERR]", f, v...) }
func (l *natsLog) Debugf(f string, v ...any)  {}
func (l *natsLog) Tracef(f string, v ...any)  {}

// count returns how many lines contain every one of parts.
func (l *natsLog) count(parts ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
line:
	for _, s := range l.lines {
		for _, p := range parts {
			if !strings.Contains(s, p) {
				continue line
			}
		}
		n++
	}
	return n
}

// hostileReplica is the app replica behind the gateways: /id reports the
// forwarding fields it got, /slow answers once released, /upload reports the
// body it read (and signals when half its first part arrived).
type hostileReplica struct {
	slowStarted, release chan struct{}
	firstPart            chan struct{}
	partLen              int
}

func (r *hostileReplica) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	tenant := req.Header.Get("Neo-Tenant")
	switch req.URL.Path {
	case "/id":
		_ = json.NewEncoder(w).Encode(map[string]string{
			"xff": strings.Join(req.Header.Values("X-Forwarded-For"), "|"), "xfp": strings.Join(req.Header.Values("X-Forwarded-Proto"), "|"),
			"xfh": strings.Join(req.Header.Values("X-Forwarded-Host"), "|"), "tenant": tenant,
		})
	case "/slow":
		r.slowStarted <- struct{}{}
		select {
		case <-r.release:
		case <-time.After(15 * time.Second):
		}
		fmt.Fprintf(w, "honest-%s", tenant)
	case "/upload":
		h := sha256.New()
		buf := make([]byte, 32<<10)
		n, signaled := 0, false
		for {
			m, err := req.Body.Read(buf)
			h.Write(buf[:m])
			n += m
			// half: the last bytes written may wait in a buffer on the way
			if n >= r.partLen/2 && !signaled {
				signaled = true
				r.firstPart <- struct{}{}
			}
			if err != nil {
				break
			}
		}
		fmt.Fprintf(w, "%s len=%d sha=%s", tenant, n, hex.EncodeToString(h.Sum(nil)))
	default:
		http.NotFound(w, req)
	}
}

// hostileConn is a NATS connection of the attacker, with the asynchronous
// errors (permission violations) the server sends it.
type hostileConn struct {
	*nats.Conn
	user string
	mu   sync.Mutex
	errs []string
}

func (h *hostileConn) violations() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, e := range h.errs {
		if strings.Contains(strings.ToLower(e), "permissions violation") {
			n++
		}
	}
	return n
}

func dialHostile(t *testing.T, url, user, inbox string) *hostileConn {
	t.Helper()
	h := &hostileConn{user: user}
	nc, err := nats.Connect(url, nats.UserInfo(user, "pw-"+user), nats.CustomInboxPrefix(inbox), nats.Name("hostile-"+user),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			h.mu.Lock()
			h.errs = append(h.errs, err.Error())
			h.mu.Unlock()
		}))
	if err != nil {
		t.Fatalf("%s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	h.Conn = nc
	return h
}

// waitUntil polls cond until it holds or d passes.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// forgedFrames are the frames an attacker sends to an edge inbox to answer
// or redirect a request: a credit naming its own inbox (to be sent the
// body), response heads in both framings, data, cancel, probe and error
// frames. reply is the attacker's own inbox.
func forgedFrames(to, reply string) []*nats.Msg {
	v2 := append([]byte("NEO\x02r"), 's', 3, '2', '0', '0', 'e', 1, '1', 0)
	return []*nats.Msg{
		{Subject: to, Reply: reply, Header: nats.Header{"Neo-Nats-Kind": {"credit"}, "Neo-Nats-Credit": {"64"}, "Neo-Nats-Inbox": {reply}}},
		{Subject: to, Reply: reply, Data: append(v2, "INJECTED"...)},
		{Subject: to, Reply: reply, Header: nats.Header{"Neo-Nats-Kind": {"resp"}, "Neo-Nats-Status": {"200"}, "Neo-Nats-Eof": {"1"}, "Neo-Nats-Inbox": {reply}}, Data: []byte("INJECTED")},
		{Subject: to, Reply: reply, Header: nats.Header{"Neo-Nats-Kind": {"data"}, "Neo-Nats-Seq": {"1"}, "Neo-Nats-Eof": {"1"}}, Data: []byte("INJECTED")},
		{Subject: to, Reply: reply, Header: nats.Header{"Neo-Nats-Kind": {"cancel"}}},
		{Subject: to, Reply: reply, Header: nats.Header{"Neo-Nats-Kind": {"probe"}}},
		{Subject: to, Reply: reply, Header: nats.Header{"Neo-Nats-Kind": {"error"}, "Neo-Nats-Error": {"evil"}}},
	}
}

// guesses are the inboxes an attacker derives from one it saw: its
// neighbours if its last token reads as a counter (as the edge's tokens once
// were), small counters, and variations of the token itself. The inbox
// itself is left out: the attacker was given that one (a copy of the head),
// so the server lets it answer there (see "a second gateway given the same
// request").
func guesses(seen string) []string {
	i := strings.LastIndexByte(seen, '.')
	prefix, tok := seen[:i], seen[i+1:]
	var out []string
	if n, err := strconv.ParseUint(tok, 36, 64); err == nil {
		for d := uint64(1); d <= 12; d++ {
			out = append(out, prefix+"."+strconv.FormatUint(n+d, 36))
		}
	}
	for n := uint64(1); n <= 4; n++ {
		out = append(out, prefix+"."+strconv.FormatUint(n, 36))
	}
	b := []byte(tok)
	b[len(b)-1] ^= 1
	return append(out, prefix+"."+string(b), seen+".1", seen+".2")
}

// TestNATSHostileGateway runs an edge and stage gateways (real caddy
// binaries) against a nats-server with the production permissions
// (caddyfiles/nats/nats-server.conf), next to an attacker connected with
// acme's tenant gateway credentials (gw-prod-acme) and with the dev
// gateways' (gw-dev). The attacker listens where those users may, learns
// edge inboxes from the requests it is given, and tries to answer, read
// and redirect globex's production requests: forged responses, credit,
// data, cancel and probe frames to guessed inboxes, replays of what it
// captured, subscriptions to other stages' and tenants' subjects. Every
// attempt fails — a permission violation that nats-server logs with the
// attacker's user, or a frame the edge drops and logs with the reply
// subject the attacker claimed — and the victims' requests, a streamed
// upload among them, complete with the right bytes; no byte of them reaches
// the attacker. The replica also sees the client the edge saw
// (X-Forwarded-For, -Proto https, -Host).
func TestNATSHostileGateway(t *testing.T) {
	for _, u := range []string{"edge", "platform", "gw-prod", "gw-dev", "gw-prod-acme", "monitor"} {
		t.Setenv("NEO_NATS_"+strings.ToUpper(strings.ReplaceAll(u, "-", "_"))+"_PASSWORD", "pw-"+u)
	}
	opts, err := server.ProcessConfigFile(harness.RepoRoot() + "/caddyfiles/nats/nats-server.conf")
	if err != nil {
		t.Fatal(err)
	}
	ports, err := harness.FreePorts(7)
	if err != nil {
		t.Fatal(err)
	}
	natsPort, edgeAdmin, httpPort, httpsPort, gwAdmin, stagePort, replicaPort := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6]
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", natsPort, true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	slog := &natsLog{}
	ns.SetLoggerV2(slog, false, false, false)
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)

	rep := &hostileReplica{slowStarted: make(chan struct{}, 1), release: make(chan struct{}), firstPart: make(chan struct{}, 4), partLen: 256 << 10}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", replicaPort))
	if err != nil {
		t.Fatal(err)
	}
	rsrv := &http.Server{Handler: rep}
	go func() { _ = rsrv.Serve(ln) }()
	t.Cleanup(func() { _ = rsrv.Close() })

	dir := t.TempDir()
	gwCfg := dir + "/gateways.Caddyfile"
	gatewayBlock := func(name, conn, stage, tenant string) string {
		b := fmt.Sprintf("\tneo_nats_gateway %s {\n\t\tconnection %s\n\t\tserver stage\n\t\tstage %s\n\t\tzone az-a\n", name, conn, stage)
		if tenant != "" {
			b += "\t\ttenant " + tenant + "\n"
		}
		return b + "\t}\n"
	}
	conn := func(name, user, inbox string) string {
		return fmt.Sprintf("\t\tconnection %s {\n\t\t\tservers %s\n\t\t\tuser %s pw-%s\n\t\t\tinbox_prefix %s\n\t\t}\n", name, natsURL, user, user, inbox)
	}
	if err := os.WriteFile(gwCfg, []byte(fmt.Sprintf(`{
	admin 127.0.0.1:%d
	servers 127.0.0.1:%d {
		name stage
	}
	neo_nats {
%s%s%s	}
%s%s%s}

http://:%d {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:%d
}
`, gwAdmin, stagePort, conn("prod", "gw-prod", "_GW.prod"), conn("acme", "gw-prod-acme", "_GW.prod-acme"), conn("dev", "gw-dev", "_GW.dev"),
		gatewayBlock("prod", "prod", "prod", ""), gatewayBlock("prod-acme", "acme", "prod", "acme"), gatewayBlock("dev", "dev", "dev", ""),
		stagePort, replicaPort)), 0o644); err != nil {
		t.Fatal(err)
	}
	gws := harness.Start(t, harness.Options{Config: gwCfg, Admin: fmt.Sprintf("127.0.0.1:%d", gwAdmin), WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", stagePort)}})

	// the edge: HTTPS, behind a trusted proxy on loopback (its
	// X-Forwarded-For names the client), transport log lines at debug
	edgeCfg := dir + "/edge.Caddyfile"
	if err := os.WriteFile(edgeCfg, []byte(fmt.Sprintf(`{
	admin 127.0.0.1:%d
	http_port %d
	https_port %d
	default_bind 127.0.0.1
	local_certs
	skip_install_trust
	servers {
		trusted_proxies static 127.0.0.1/32
		client_ip_headers X-Forwarded-For
	}
	log transport {
		level DEBUG
		include http.reverse_proxy.transport.neo_nats
	}
	log {
		exclude http.reverse_proxy.transport.neo_nats
	}
	neo_nats {
		connection default {
			servers %s
			user edge pw-edge
			inbox_prefix _EDGE
		}
	}
}

acme.apps.localhost, globex.apps.localhost, acme-dev.apps.localhost {
	map {host} {neo.tenant} {neo.stage} {neo.app} {
		acme.apps.localhost acme prod web
		globex.apps.localhost globex prod web
		acme-dev.apps.localhost acme dev web
	}
	reverse_proxy nats {
		transport neo_nats {
			zones az-a
			response_header_timeout 20s
			chunk_timeout 20s
		}
	}
}
`, edgeAdmin, httpPort, httpsPort, natsURL)), 0o644); err != nil {
		t.Fatal(err)
	}
	edge := harness.Start(t, harness.Options{Config: edgeCfg, Admin: fmt.Sprintf("127.0.0.1:%d", edgeAdmin), Home: dir + "/home",
		WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", httpsPort)}})
	roots, err := edge.RootPool("local")
	if err != nil {
		t.Fatal(err)
	}
	client := harness.Client(fmt.Sprintf("127.0.0.1:%d", httpsPort), roots)
	client.Timeout = 30 * time.Second
	url := func(host, path string) string { return fmt.Sprintf("https://%s:%d%s", host, httpsPort, path) }
	get := func(host, path string, hdr ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", url(host, path), nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, h := range []string{"acme.apps.localhost", "globex.apps.localhost", "acme-dev.apps.localhost"} {
		if err := harness.WaitServing(client, url(h, "/id"), 20*time.Second); err != nil {
			t.Fatalf("%s: %v\nedge:\n%s\ngateways:\n%s", h, err, edge.Logs(), gws.Logs())
		}
	}

	// the attacker: acme's production gateway and the dev gateways
	evilAcme := dialHostile(t, natsURL, "gw-prod-acme", "_GW.prod-acme")
	evilDev := dialHostile(t, natsURL, "gw-dev", "_GW.dev")
	const evilAcmeIn, evilDevIn = "_GW.prod-acme.evil.IN", "_GW.dev.evil.IN"
	// what reaches the inboxes the attacker names in its frames
	stolen := map[*hostileConn]*nats.Subscription{}
	for h, inbox := range map[*hostileConn]string{evilAcme: evilAcmeIn, evilDev: evilDevIn} {
		sub, err := h.SubscribeSync(inbox[:strings.LastIndexByte(inbox, '.')] + ".>")
		if err != nil {
			t.Fatal(err)
		}
		stolen[h] = sub
	}
	// the heads each may be given: its own tenant's and stage's, in the
	// gateways' queue group (the only way the permissions allow), beside
	// the honest gateways
	acmeHeads, devHeads := make(chan *nats.Msg, 64), make(chan *nats.Msg, 64)
	acmeQueue, err := evilAcme.ChanQueueSubscribe("neo.rt.prod.*.acme.>", "neo-gateway", acmeHeads)
	if err != nil {
		t.Fatal(err)
	}
	devQueue, err := evilDev.ChanQueueSubscribe("neo.rt.dev.>", "neo-gateway", devHeads)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*hostileConn{evilAcme, evilDev} {
		if err := h.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	violations := func(h *hostileConn) int { return h.violations() }
	// noneStolen checks that nothing reached the inboxes h named: anything
	// the edge sent there went out before the response that just arrived,
	// so it is here once the server has answered a PING sent after it
	noneStolen := func(t *testing.T, h *hostileConn) {
		t.Helper()
		if err := h.Flush(); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := stolen[h].NextMsg(20 * time.Millisecond)
			if err != nil {
				return
			}
			t.Errorf("%s received %s: %.100q", h.user, m.Subject, m.Data)
		}
	}
	// expectDenied waits until the server has refused n more operations of h
	// and logged each with h's user
	expectDenied := func(t *testing.T, h *hostileConn, before, logged, n int, what string) {
		t.Helper()
		_ = h.Flush()
		waitUntil(t, 10*time.Second, fmt.Sprintf("%d refusals of %s (%s)", n, h.user, what), func() bool { return violations(h) >= before+n })
		waitUntil(t, 10*time.Second, "the server's log lines naming "+h.user, func() bool {
			return slog.count("Violation", `/user:`+h.user+`"`) >= logged+n
		})
	}

	t.Run("client identity", func(t *testing.T) {
		code, body := get("globex.apps.localhost", "/id", "X-Forwarded-For", "203.0.113.9")
		var id map[string]string
		if code != 200 || json.Unmarshal([]byte(body), &id) != nil {
			t.Fatalf("%d %q", code, body)
		}
		host := fmt.Sprintf("globex.apps.localhost:%d", httpsPort)
		if id["xff"] != "203.0.113.9" || id["xfp"] != "https" || id["xfh"] != host || id["tenant"] != "globex" {
			t.Fatalf("the replica saw %v, want the client 203.0.113.9 over https to %s", id, host)
		}
		if _, body = get("globex.apps.localhost", "/id"); !strings.Contains(body, `"xff":"127.0.0.1"`) {
			t.Fatalf("without a forwarded client: %s", body)
		}
	})

	// given runs requests to host until the queue gives one to the
	// attacker (heads), and returns its head and the client's result
	given := func(t *testing.T, host string, heads chan *nats.Msg) (*nats.Msg, chan string) {
		t.Helper()
		for range 100 {
			res := make(chan string, 1)
			go func() {
				resp, err := client.Get(url(host, "/id"))
				if err != nil {
					res <- err.Error()
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				res <- fmt.Sprintf("%d %s", resp.StatusCode, b)
			}()
			select {
			case m := <-heads:
				return m, res
			case r := <-res:
				if !strings.HasPrefix(r, "200 ") {
					t.Fatalf("%s: %s", host, r)
				}
			}
		}
		t.Fatalf("no request to %s was given to the attacker in 100", host)
		return nil, nil
	}
	// answer is a complete response from inbox (version 1)
	answer := func(to, inbox, body string) *nats.Msg {
		return &nats.Msg{Subject: to, Reply: inbox, Header: nats.Header{"Neo-Nats-Kind": {"resp"}, "Neo-Nats-Status": {"200"}, "Neo-Nats-Eof": {"1"}, "Neo-Nats-Inbox": {inbox}}, Data: []byte(body)}
	}
	const evilAcmeOwn, evilDevOwn = "_GW.prod-acme.own.IN", "_GW.dev.own.IN"

	// An acme request the queue gives to the attacker: it accepts it (its
	// inbox, with credit), then sends frames that claim to come from other
	// gateways, or from nobody, then answers. The edge drops and logs every
	// frame whose reply subject is not the accepting gateway's; the client
	// gets the attacker's answer (it was given the request). A replay of
	// the answer after the request ended reaches the edge (the server let
	// the attacker answer there) and is dropped as a frame of no request.
	var acmeHead, devHead *nats.Msg
	t.Run("a request given to the attacker", func(t *testing.T) {
		var res chan string
		acmeHead, res = given(t, "acme.apps.localhost", acmeHeads)
		accept := &nats.Msg{Subject: acmeHead.Reply, Reply: evilAcmeOwn, Header: nats.Header{"Neo-Nats-Kind": {"credit"}, "Neo-Nats-Inbox": {evilAcmeOwn}}}
		if err := evilAcme.PublishMsg(accept); err != nil {
			t.Fatal(err)
		}
		claimed := []string{"_GW.prod.honest.IN", "_GW.prod-acme.other.IN", ""}
		for _, reply := range claimed {
			for _, m := range forgedFrames(acmeHead.Reply, reply)[1:] {
				if err := evilAcme.PublishMsg(m); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := evilAcme.PublishMsg(answer(acmeHead.Reply, evilAcmeOwn, "attacker-served")); err != nil {
			t.Fatal(err)
		}
		if r := <-res; r != "200 attacker-served" {
			t.Fatalf("the request given to the attacker: %q", r)
		}
		waitUntil(t, 10*time.Second, "the edge's log lines about the forged frames", func() bool {
			return strings.Count(edge.Logs(), `"claimed_reply":"_GW.prod.honest.IN"`) >= 4
		})
		logs := edge.Logs()
		for _, want := range []string{`"reason":"wrong_reply"`, `"tenant":"acme"`, `"subject":"neo.rt.prod.az-a.acme.web"`} {
			if !strings.Contains(logs, want) {
				t.Errorf("the edge's log does not say %s", want)
			}
		}
		if err := evilAcme.PublishMsg(answer(acmeHead.Reply, evilAcmeOwn, "replayed")); err != nil {
			t.Fatal(err)
		}
		_ = evilAcme.Flush()
		waitUntil(t, 10*time.Second, "the edge dropping a replay to a finished request", func() bool {
			for _, l := range strings.Split(edge.Logs(), "\n") {
				if strings.Contains(l, `"reason":"unknown_stream"`) && strings.Contains(l, `"claimed_reply":"`+evilAcmeOwn+`"`) {
					return true
				}
			}
			return false
		})
	})
	if acmeHead == nil {
		t.FailNow()
	}
	// a dev request, to learn the dev path's inboxes too; then the attacker
	// leaves both queues (the honest gateways serve the rest)
	var res chan string
	devHead, res = given(t, "acme-dev.apps.localhost", devHeads)
	_ = evilDev.PublishMsg(answer(devHead.Reply, evilDevOwn, "attacker-served"))
	if r := <-res; r != "200 attacker-served" {
		t.Fatalf("the dev request given to the attacker: %q", r)
	}
	for _, sub := range []*nats.Subscription{acmeQueue, devQueue} {
		if err := sub.Unsubscribe(); err != nil {
			t.Fatal(err)
		}
	}
	_ = evilAcme.Flush()
	_ = evilDev.Flush()
	t.Logf("edge inboxes the attacker was given: %s, %s", acmeHead.Reply, devHead.Reply)

	t.Run("subscriptions", func(t *testing.T) {
		for h, subjects := range map[*hostileConn][]string{
			// a copy of every head of its own tenant (outside the queue
			// group), other tenants', stages', inboxes
			evilAcme: {"neo.rt.prod.*.acme.>", "neo.rt.prod.*.globex.>", "neo.rt.prod.>", "neo.rt.dev.>", "_EDGE.>", "_PLATFORM.>", "_GW.prod.>", "_GW.>", ">"},
			evilDev:  {"neo.rt.dev.>", "neo.rt.prod.>", "neo.rt.>", "_EDGE.>", "_PLATFORM.>", "_GW.prod.>", "_GW.prod-acme.>", ">"},
		} {
			before, logged := violations(h), slog.count("Violation", `/user:`+h.user+`"`)
			for _, s := range subjects {
				if _, err := h.SubscribeSync(s); err != nil {
					t.Fatal(err)
				}
			}
			expectDenied(t, h, before, logged, len(subjects), "subscriptions")
		}
	})

	t.Run("response injection", func(t *testing.T) {
		type result struct {
			code int
			body string
		}
		res := make(chan result, 1)
		go func() {
			req, _ := http.NewRequest("GET", url("globex.apps.localhost", "/slow"), nil)
			resp, err := client.Do(req)
			if err != nil {
				res <- result{0, err.Error()}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			res <- result{resp.StatusCode, string(b)}
		}()
		// answers to every inbox the attacker can derive, while globex's
		// request waits for its replica
		select {
		case <-rep.slowStarted:
		case <-time.After(10 * time.Second):
			t.Fatal("globex's request never reached the replica")
		}
		n := 0
		before, logged := violations(evilAcme), slog.count("Violation", `/user:gw-prod-acme"`)
		for range 10 {
			for _, to := range append(guesses(acmeHead.Reply), guesses(devHead.Reply)...) {
				for _, m := range forgedFrames(to, evilAcmeIn)[1:3] {
					_ = evilAcme.PublishMsg(m)
					n++
				}
			}
			_ = evilAcme.Flush()
		}
		close(rep.release)
		r := <-res
		if r.code != 200 || r.body != "honest-globex" {
			t.Fatalf("globex got %d %q", r.code, r.body)
		}
		expectDenied(t, evilAcme, before, logged, n, "responses to guessed inboxes")
	})

	t.Run("body theft", func(t *testing.T) {
		part1 := strings.Repeat("a", rep.partLen)
		secret := "card=4111111111111111&cvv=123"
		pr, pw := io.Pipe()
		type result struct {
			code int
			body string
		}
		res := make(chan result, 1)
		go func() {
			req, _ := http.NewRequest("POST", url("globex.apps.localhost", "/upload"), pr)
			resp, err := client.Do(req)
			if err != nil {
				res <- result{0, err.Error()}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			res <- result{resp.StatusCode, string(b)}
		}()
		// credit frames naming the dev gateway's inbox, to every inbox it
		// can derive, from before the upload starts until its first part
		// has reached the replica
		before, logged := violations(evilDev), slog.count("Violation", `/user:gw-dev"`)
		n := 0
		flood := func() {
			for _, to := range append(guesses(devHead.Reply), guesses(acmeHead.Reply)...) {
				for _, m := range forgedFrames(to, evilDevIn)[:1] {
					_ = evilDev.PublishMsg(m)
					n++
				}
			}
		}
		flood()
		if _, err := pw.Write([]byte(part1)); err != nil {
			t.Fatal(err)
		}
		arrived := false
		for i := 0; i < 200 && !arrived; i++ {
			flood()
			select {
			case <-rep.firstPart:
				arrived = true
			default:
			}
		}
		if !arrived {
			select {
			case <-rep.firstPart:
			case <-time.After(10 * time.Second):
				t.Fatal("the upload's first part never reached the replica")
			}
		}
		if _, err := pw.Write([]byte(secret)); err != nil {
			t.Fatal(err)
		}
		pw.Close()
		r := <-res
		sum := sha256.Sum256([]byte(part1 + secret))
		if want := fmt.Sprintf("globex len=%d sha=%s", len(part1)+len(secret), hex.EncodeToString(sum[:])); r.code != 200 || r.body != want {
			t.Errorf("globex's upload: %d %q, want %q", r.code, r.body, want)
		}
		noneStolen(t, evilDev)
		expectDenied(t, evilDev, before, logged, n, "credit frames to guessed inboxes")
	})

	t.Run("forged frames and replays", func(t *testing.T) {
		for _, h := range []*hostileConn{evilAcme, evilDev} {
			before, logged := violations(h), slog.count("Violation", `/user:`+h.user+`"`)
			n := 0
			var targets []string
			for _, seen := range []string{acmeHead.Reply, devHead.Reply} {
				targets = append(targets, guesses(seen)...)
			}
			// other gateways' inboxes, the platform's, the request subjects
			targets = append(targets, "_GW.prod.x.IN", "_GW.prod-acme.x.IN", "_PLATFORM.x.IN")
			for _, to := range targets {
				for _, m := range forgedFrames(to, "_GW.x.IN") {
					_ = h.PublishMsg(m)
					n++
				}
			}
			// replays of the heads it was given, to globex, to prod, to the
			// edge
			for _, subj := range []string{"neo.rt.prod.az-a.globex.web", "neo.rt.prod.az-a.acme.web", "neo.rt.dev.az-a.acme.web"} {
				for _, head := range []*nats.Msg{acmeHead, devHead} {
					_ = h.PublishMsg(&nats.Msg{Subject: subj, Reply: head.Reply, Header: head.Header, Data: head.Data})
					n++
				}
			}
			expectDenied(t, h, before, logged, n, "forged frames and replays")
		}
	})

	for h := range stolen {
		noneStolen(t, h)
	}
	// the edge counted what it dropped
	code, metrics, err := edge.Admin("GET", "/metrics", nil)
	if err != nil || code != 200 || !strings.Contains(string(metrics), `caddy_neo_nats_rejected_frames_total{reason="wrong_reply",side="edge"}`) {
		t.Errorf("metrics: %d %v\n%s", code, err, metrics)
	}

	// discovery still works with the gateways' response-only publishing
	if cli, err := exec.LookPath("nats"); err == nil {
		out, err := exec.Command(cli, "--server", natsURL, "--user", "monitor", "--password", "pw-monitor", "micro", "ls").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "neo_stage_gateway") || !strings.Contains(string(out), "stage prod zone az-a") || !strings.Contains(string(out), "stage dev zone az-a") {
			t.Errorf("nats micro ls as monitor: %v\n%s", err, out)
		}
	} else {
		t.Log("nats CLI not installed: micro discovery not checked")
	}
	// and no honest process was refused anything
	if n := slog.count("Violation") - slog.count("Violation", `"v1.55.0:go:hostile-`); n != 0 {
		t.Errorf("%d permission violations of the edge or the gateways", n)
	}
	t.Logf("nats-server logged %d permission violations of gw-prod-acme and %d of gw-dev",
		slog.count("Violation", `/user:gw-prod-acme"`), slog.count("Violation", `/user:gw-dev"`))
}
