package integration

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/projectneo/caddy-neo/integration/harness"
)

// The egress tests run caddyfiles/egress.Caddyfile, once per zone, against a
// "partner API" served by this test process on 127.0.0.10 (the address the
// role file treats as external) over http and https, and an "internal"
// service on 127.0.0.1 that must never be reached through the gateway.

const (
	partnerIP = "127.0.0.10"
	acmeIP    = "127.0.0.21" // caller acme/dev/orders by address
	globexIP  = "127.0.0.31" // caller globex/dev/billing by address
	strangeIP = "127.0.0.99" // unknown caller
)

// partnerReport is what the partner API answers.
type partnerReport struct {
	Remote    string `json:"remote"`
	Host      string `json:"host"`
	Path      string `json:"path"`
	Proto     string `json:"proto"`
	TLS       bool   `json:"tls"`
	ProxyAuth string `json:"proxy_authorization"`
}

type partnerAPI struct {
	httpPort, tlsPort int
	roots             *x509.CertPool
	internalURL       string
	internalHits      atomic.Int64
}

func partnerHandler(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/redirect":
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
		return
	case "/bytes":
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = w.Write(make([]byte, n))
		return
	}
	json.NewEncoder(w).Encode(partnerReport{
		Remote: r.RemoteAddr, Host: r.Host, Path: r.URL.Path, Proto: r.Proto,
		TLS: r.TLS != nil, ProxyAuth: r.Header.Get("Proxy-Authorization"),
	})
}

func startPartner(t *testing.T) *partnerAPI {
	t.Helper()
	p := &partnerAPI{}
	serve := func(ip string, tlsConf *tls.Config, h http.Handler) int {
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		if tlsConf != nil {
			l = tls.NewListener(l, tlsConf)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		return l.Addr().(*net.TCPAddr).Port
	}
	cert, roots := partnerCert(t)
	p.roots = roots
	p.httpPort = serve(partnerIP, nil, http.HandlerFunc(partnerHandler))
	p.tlsPort = serve(partnerIP, &tls.Config{Certificates: []tls.Certificate{cert}}, http.HandlerFunc(partnerHandler))
	internal := serve("127.0.0.1", nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.internalHits.Add(1)
		io.WriteString(w, "internal secret")
	}))
	p.internalURL = fmt.Sprintf("http://127.0.0.1:%d/secret", internal)
	return p
}

// partnerCert makes a CA and a leaf for the partner names and 127.0.0.10.
func partnerCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "partner test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "api.partner.localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames:    []string{"api.partner.localhost", "bank.partner.localhost"},
		IPAddresses: []net.IP{net.ParseIP(partnerIP)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}, pool
}

type gateway struct {
	inst      *harness.Instance
	addr      string
	zone, src string
}

// startGateway runs caddyfiles/egress.Caddyfile for one zone, with the
// lab's callers, credentials and partner API (NEO_EGRESS_POLICY=lab).
func startGateway(t *testing.T, zone, source string) *gateway {
	t.Helper()
	ports, err := harness.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	admin := fmt.Sprintf("127.0.0.1:%d", ports[0])
	addr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	inst := harness.Start(t, harness.Options{
		Config: "caddyfiles/egress.Caddyfile",
		Admin:  admin,
		Env: []string{
			"NEO_ADMIN=" + admin, "NEO_EGRESS_PORT=" + strconv.Itoa(ports[1]),
			"NEO_ZONE=" + zone, "NEO_EGRESS_SOURCE=" + source, "NEO_EGRESS_POLICY=lab",
		},
		WaitFor: []string{addr},
	})
	t.Cleanup(func() {
		// With a -race binary (NEO_CADDY_BIN), a race report fails the test.
		inst.Stop()
		if strings.Contains(inst.Logs(), "WARNING: DATA RACE") {
			t.Errorf("data race in the gateway:\n%s", inst.Logs())
		}
	})
	return &gateway{inst: inst, addr: addr, zone: zone, src: source}
}

// client returns an HTTP client that uses the gateway as its proxy for http
// and https, dialling from localIP, with proxy credentials if user is set,
// trusting only roots for TLS. Redirects are followed only if follow.
func (g *gateway) client(localIP, user, pass string, roots *x509.CertPool, follow bool) *http.Client {
	u := &url.URL{Scheme: "http", Host: g.addr}
	if user != "" {
		u.User = url.UserPassword(user, pass)
	}
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}}
	c := &http.Client{
		Transport: &http.Transport{
			Proxy:           http.ProxyURL(u),
			DialContext:     d.DialContext,
			TLSClientConfig: &tls.Config{RootCAs: roots},
		},
		Timeout: 15 * time.Second,
	}
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c
}

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// rawConnect sends a CONNECT over HTTP/1.1 from localIP and returns the
// response and the connection (open only if the status is 200).
func (g *gateway) rawConnect(t *testing.T, localIP, authority, auth string) (*http.Response, net.Conn, *bufio.Reader) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}}
	c, err := d.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	req := "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n"
	if auth != "" {
		req += "Proxy-Authorization: " + auth + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil {
		c.Close()
		t.Fatalf("CONNECT %s: %v", authority, err)
	}
	if resp.StatusCode != 200 {
		resp.Body.Close()
		c.Close()
		return resp, nil, nil
	}
	t.Cleanup(func() { c.Close() })
	return resp, c, br
}

func getPartner(t *testing.T, c *http.Client, u string) partnerReport {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: status %d %s", u, resp.StatusCode, body)
	}
	var rep partnerReport
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("GET %s: %v in %q", u, err, body)
	}
	return rep
}

func remoteIP(t *testing.T, hostport string) string {
	t.Helper()
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestEgressZoneSourceAddress: the partner API is reached through each
// zone's gateway from that zone's fixed address, for http:// and for
// https:// through a CONNECT tunnel whose certificate the client validates.
func TestEgressZoneSourceAddress(t *testing.T) {
	p := startPartner(t)
	for _, z := range []struct{ zone, src string }{{"az-a", "127.0.0.2"}, {"az-b", "127.0.0.3"}} {
		t.Run(z.zone, func(t *testing.T) {
			g := startGateway(t, z.zone, z.src)
			for _, who := range []struct {
				name, ip, user, pass string
			}{
				{"by address", acmeIP, "", ""},
				{"by credentials", strangeIP, "acme-orders", "acme-orders-demo-secret"},
			} {
				c := g.client(who.ip, who.user, who.pass, p.roots, false)
				rep := getPartner(t, c, fmt.Sprintf("http://api.partner.localhost:%d/v1/orders", p.httpPort))
				if got := remoteIP(t, rep.Remote); got != z.src {
					t.Errorf("%s http: partner saw %s, want %s", who.name, got, z.src)
				}
				if rep.ProxyAuth != "" || rep.Host != fmt.Sprintf("api.partner.localhost:%d", p.httpPort) || rep.Path != "/v1/orders" {
					t.Errorf("%s http: partner got %+v", who.name, rep)
				}
				rep = getPartner(t, c, fmt.Sprintf("https://api.partner.localhost:%d/v1/orders", p.tlsPort))
				if got := remoteIP(t, rep.Remote); got != z.src || !rep.TLS {
					t.Errorf("%s https: partner saw %s (tls %v), want %s", who.name, got, rep.TLS, z.src)
				}
			}
			// The client, not the gateway, validates the partner's certificate:
			// a client that does not trust the partner CA fails.
			c := g.client(acmeIP, "", "", x509.NewCertPool(), false)
			if _, err := c.Get(fmt.Sprintf("https://api.partner.localhost:%d/", p.tlsPort)); err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Errorf("untrusted partner certificate: want a certificate error, got %v", err)
			}
			logs := g.inst.Logs()
			if !strings.Contains(logs, `"msg":"egress connection"`) || !strings.Contains(logs, `"tenant":"acme"`) ||
				!strings.Contains(logs, `"zone":"`+z.zone+`"`) || !strings.Contains(logs, `"bytes_down":`) {
				t.Errorf("no egress connection log line with tenant and zone:\n%s", logs)
			}
			if strings.Contains(logs, "acme-orders-demo-secret") || strings.Contains(logs, basicAuth("acme-orders", "acme-orders-demo-secret")[6:]) {
				t.Error("a proxy secret appears in the logs")
			}
		})
	}
}

// TestEgressH2Connect: a CONNECT tunnel over HTTP/2 (h2c, prior knowledge)
// carries TLS from the client to the partner.
func TestEgressH2Connect(t *testing.T) {
	p := startPartner(t)
	g := startGateway(t, "az-a", "127.0.0.2")
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(acmeIP)}}
			return d.DialContext(ctx, "tcp", g.addr)
		},
	}
	defer tr.CloseIdleConnections()
	for i := range 2 { // two streams on one connection
		pr, pw := io.Pipe()
		req := &http.Request{
			Method: http.MethodConnect, URL: &url.URL{Scheme: "http", Host: g.addr},
			Host: fmt.Sprintf("api.partner.localhost:%d", p.tlsPort), Header: http.Header{}, Body: pr,
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("h2 CONNECT: %v", err)
		}
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("h2 CONNECT: status %d proto %s", resp.StatusCode, resp.Proto)
		}
		conn := tls.Client(&streamConn{r: resp.Body, w: pw}, &tls.Config{ServerName: "api.partner.localhost", RootCAs: p.roots})
		fmt.Fprintf(conn, "GET /h2/%d HTTP/1.1\r\nHost: api.partner.localhost\r\nConnection: close\r\n\r\n", i)
		hr, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("request through the h2 tunnel: %v", err)
		}
		var rep partnerReport
		if err := json.NewDecoder(hr.Body).Decode(&rep); err != nil {
			t.Fatal(err)
		}
		if remoteIP(t, rep.Remote) != "127.0.0.2" || !rep.TLS || rep.Path != fmt.Sprintf("/h2/%d", i) {
			t.Errorf("through the h2 tunnel the partner saw %+v", rep)
		}
		conn.Close()
		pw.Close()
		resp.Body.Close()
	}
	// A refused h2 CONNECT gets its status on the stream.
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Scheme: "http", Host: g.addr},
		Host: "metadata.partner.localhost:80", Header: http.Header{}, Body: http.NoBody}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("h2 CONNECT to a policy-refused host: status %d, want 403", resp.StatusCode)
	}
}

// streamConn is an HTTP/2 CONNECT stream as a net.Conn, for tls.Client.
type streamConn struct {
	r io.ReadCloser
	w io.WriteCloser
}

func (s *streamConn) Read(p []byte) (int, error)       { return s.r.Read(p) }
func (s *streamConn) Write(p []byte) (int, error)      { return s.w.Write(p) }
func (s *streamConn) Close() error                     { s.w.Close(); return s.r.Close() }
func (s *streamConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (s *streamConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (s *streamConn) SetDeadline(time.Time) error      { return nil }
func (s *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (s *streamConn) SetWriteDeadline(time.Time) error { return nil }

// TestEgressRefusals: allowlists, the SSRF guard on resolved and literal
// addresses, redirects, and unknown callers.
func TestEgressRefusals(t *testing.T) {
	p := startPartner(t)
	g := startGateway(t, "az-a", "127.0.0.2")
	globexAuth := basicAuth("globex-billing", "globex-billing-demo-secret")
	acmeAuth := basicAuth("acme-orders", "acme-orders-demo-secret")
	ledgerAuth := basicAuth("acme-ledger", "acme-ledger-demo-secret")
	hp := func(host string) string { return fmt.Sprintf("%s:%d", host, p.httpPort) }

	t.Run("connect", func(t *testing.T) {
		for _, tc := range []struct {
			name, ip, auth, authority string
			want                      int
		}{
			{"allowed", acmeIP, "", hp("api.partner.localhost"), 200},
			{"not in acme's allowlist", acmeIP, "", hp("bank.partner.localhost"), 403},
			{"IP literal not in acme's allowlist", acmeIP, "", hp(partnerIP), 403},
			{"app policy replaces tenant's", strangeIP, ledgerAuth, hp("api.partner.localhost"), 403},
			{"app policy allows its own", strangeIP, ledgerAuth, hp("bank.partner.localhost"), 200},
			{"globex allows any public host", globexIP, "", hp(partnerIP), 200},
			{"name resolving to metadata", globexIP, "", "metadata.partner.localhost:80", 403},
			{"name resolving to private v4 and v6", globexIP, "", "private.partner.localhost:443", 403},
			{"name resolving to loopback", globexIP, "", hp("rebind.partner.localhost"), 403},
			{"localhost via the system resolver", globexIP, "", "localhost:" + strings.Split(p.internalURL, ":")[2][:len(strings.Split(p.internalURL, ":")[2])-len("/secret")], 403},
			{"metadata literal", globexIP, "", "169.254.169.254:80", 403},
			{"loopback literal", globexIP, "", "127.0.0.1:80", 403},
			{"mapped loopback literal", globexIP, "", "[::ffff:127.0.0.1]:80", 403},
			{"IPv6 loopback", globexIP, "", "[::1]:80", 403},
			{"private literal", globexIP, "", "10.0.0.5:443", 403},
			{"CGNAT literal", globexIP, "", "100.64.0.1:443", 403},
			{"numeric name", globexIP, "", "2130706433:80", 400},
			{"no port", globexIP, "", "api.partner.localhost", 400},
			{"unknown caller", strangeIP, "", hp("api.partner.localhost"), 407},
			{"wrong secret", strangeIP, basicAuth("acme-orders", "guess"), hp("api.partner.localhost"), 407},
			{"unknown user", strangeIP, basicAuth("nobody", "x"), hp("api.partner.localhost"), 407},
			{"malformed credentials", strangeIP, "Basic !!!", hp("api.partner.localhost"), 407},
			{"credentials of another tenant than the address", acmeIP, globexAuth, hp("api.partner.localhost"), 403},
			{"credentials of the address's tenant", acmeIP, acmeAuth, hp("api.partner.localhost"), 200},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp, c, _ := g.rawConnect(t, tc.ip, tc.authority, tc.auth)
				if c != nil {
					c.Close()
				}
				if resp.StatusCode != tc.want {
					t.Fatalf("CONNECT %s: status %d, want %d", tc.authority, resp.StatusCode, tc.want)
				}
				if tc.want == 407 && !strings.HasPrefix(resp.Header.Get("Proxy-Authenticate"), "Basic ") {
					t.Errorf("407 without a Basic Proxy-Authenticate challenge: %v", resp.Header)
				}
			})
		}
	})

	t.Run("http", func(t *testing.T) {
		globex := g.client(globexIP, "", "", p.roots, false)
		for _, u := range []string{
			"http://metadata.partner.localhost/latest/meta-data/",
			"http://169.254.169.254/latest/meta-data/",
			"http://rebind.partner.localhost" + p.internalURL[len("http://127.0.0.1"):],
			p.internalURL,
			"http://[::ffff:127.0.0.1]" + p.internalURL[len("http://127.0.0.1"):],
		} {
			resp, err := globex.Get(u)
			if err != nil {
				t.Fatalf("GET %s: %v", u, err)
			}
			resp.Body.Close()
			if resp.StatusCode != 403 {
				t.Errorf("GET %s: status %d, want 403", u, resp.StatusCode)
			}
		}
		acme := g.client(acmeIP, "", "", p.roots, false)
		resp, err := acme.Get(fmt.Sprintf("http://bank.partner.localhost:%d/", p.httpPort))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("acme to bank: status %d, want 403", resp.StatusCode)
		}
		stranger := g.client(strangeIP, "", "", p.roots, false)
		resp, err = stranger.Get(fmt.Sprintf("http://api.partner.localhost:%d/", p.httpPort))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 407 || resp.Header.Get("Proxy-Authenticate") == "" {
			t.Errorf("unknown caller: status %d %v, want 407 with a challenge", resp.StatusCode, resp.Header)
		}
	})

	t.Run("malformed", func(t *testing.T) {
		for _, tc := range []struct{ name, req string }{
			{"https in absolute form", "GET https://api.partner.localhost/ HTTP/1.1\r\nHost: api.partner.localhost\r\n\r\n"},
			{"upgrade over http://", "GET http://api.partner.localhost:" + strconv.Itoa(p.httpPort) + "/ HTTP/1.1\r\nHost: api.partner.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"},
			{"numeric host", "GET http://2130706433/ HTTP/1.1\r\nHost: 2130706433\r\n\r\n"},
		} {
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(globexIP)}}
			c, err := d.Dial("tcp", g.addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, tc.req)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			c.Close()
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if resp.StatusCode != 400 {
				t.Errorf("%s: status %d, want 400", tc.name, resp.StatusCode)
			}
		}
		// Not a proxy request: served by the rest of the route.
		resp, err := http.Get("http://" + g.addr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET /healthz on the gateway: %d", resp.StatusCode)
		}
	})

	t.Run("redirects", func(t *testing.T) {
		// The gateway hands redirects back; a client following one to an
		// internal address is refused there, and the internal service sees
		// nothing.
		for _, to := range []string{p.internalURL, "http://metadata.partner.localhost/latest/", "http://rebind.partner.localhost" + p.internalURL[len("http://127.0.0.1"):]} {
			u := fmt.Sprintf("http://api.partner.localhost:%d/redirect?to=%s", p.httpPort, url.QueryEscape(to))
			resp, err := g.client(globexIP, "", "", p.roots, false).Get(u)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != to {
				t.Errorf("redirect to %s: the gateway answered %d %q, want the partner's 302 unchanged", to, resp.StatusCode, resp.Header.Get("Location"))
			}
			resp, err = g.client(globexIP, "", "", p.roots, true).Get(u)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 403 {
				t.Errorf("following the redirect to %s: status %d, want 403", to, resp.StatusCode)
			}
		}
		// Through an https CONNECT tunnel too.
		u := fmt.Sprintf("https://api.partner.localhost:%d/redirect?to=%s", p.tlsPort, url.QueryEscape(p.internalURL))
		resp, err := g.client(globexIP, "", "", p.roots, true).Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("following an https redirect to %s: status %d, want 403", p.internalURL, resp.StatusCode)
		}
		if n := p.internalHits.Load(); n != 0 {
			t.Errorf("the internal service was reached %d times", n)
		}
	})

	t.Run("records", func(t *testing.T) {
		logs := g.inst.Logs()
		for _, want := range []string{`"verdict":"denied_internal"`, `"verdict":"denied_policy"`, `"verdict":"denied_caller"`, `"verdict":"allowed"`, `"tenant":"globex"`} {
			if !strings.Contains(logs, want) {
				t.Errorf("logs lack %s", want)
			}
		}
		if strings.Contains(logs, "demo-secret") {
			t.Error("a proxy secret appears in the logs")
		}
		status, body, err := g.inst.Admin("GET", "/metrics", nil)
		if err != nil || status != 200 {
			t.Fatalf("GET /metrics: %d %v", status, err)
		}
		for _, want := range []string{
			`caddy_neo_egress_connections_total{kind="connect",tenant="acme",verdict="allowed",zone="az-a"}`,
			`caddy_neo_egress_connections_total{kind="connect",tenant="globex",verdict="denied_internal",zone="az-a"}`,
			`caddy_neo_egress_connections_total{kind="connect",tenant="unknown",verdict="denied_caller",zone="az-a"}`,
			`caddy_neo_egress_bytes_total{direction="down",tenant="globex",zone="az-a"}`,
		} {
			if !strings.Contains(string(body), want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
}

// TestEgressTenantLimits: globex at its connection limit is refused (429)
// while acme's calls go through, and globex's bandwidth limit does not slow
// acme's download.
func TestEgressTenantLimits(t *testing.T) {
	p := startPartner(t)
	g := startGateway(t, "az-a", "127.0.0.2")
	authority := fmt.Sprintf("api.partner.localhost:%d", p.httpPort)
	// globex's two connections (max_conns 2).
	var tunnels []net.Conn
	var readers []*bufio.Reader
	for range 2 {
		resp, c, br := g.rawConnect(t, globexIP, authority, "")
		if resp.StatusCode != 200 {
			t.Fatalf("globex tunnel: status %d", resp.StatusCode)
		}
		tunnels, readers = append(tunnels, c), append(readers, br)
	}
	resp, c, _ := g.rawConnect(t, globexIP, authority, "")
	if c != nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("globex's third connection: status %d, want 429", resp.StatusCode)
	}
	// acme is not affected.
	acme := g.client(acmeIP, "", "", p.roots, false)
	for i := range 5 {
		getPartner(t, acme, fmt.Sprintf("http://api.partner.localhost:%d/acme/%d", p.httpPort, i))
		getPartner(t, acme, fmt.Sprintf("https://api.partner.localhost:%d/acme/%d", p.tlsPort, i))
	}
	// globex downloads 192 KiB at 64 KiB/s (at least 2.5 s after the 32 KiB
	// burst) while acme downloads 2 MiB; acme finishes first.
	var wg sync.WaitGroup
	var globexTook time.Duration
	var globexErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		fmt.Fprintf(tunnels[0], "GET /bytes?n=%d HTTP/1.1\r\nHost: %s\r\n\r\n", 192<<10, authority)
		hr, err := http.ReadResponse(readers[0], nil)
		if err == nil {
			var n int64
			n, err = io.Copy(io.Discard, hr.Body)
			if err == nil && n != 192<<10 {
				err = fmt.Errorf("got %d bytes", n)
			}
		}
		globexTook, globexErr = time.Since(start), err
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	r, err := acme.Get(fmt.Sprintf("http://api.partner.localhost:%d/bytes?n=%d", p.httpPort, 2<<20))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, r.Body)
	r.Body.Close()
	acmeTook := time.Since(start)
	if err != nil || n != 2<<20 {
		t.Fatalf("acme download: %d bytes, %v", n, err)
	}
	wg.Wait()
	if globexErr != nil {
		t.Fatalf("globex download: %v", globexErr)
	}
	t.Logf("globex 192 KiB at 64 KiB/s took %s; acme 2 MiB unlimited took %s", globexTook, acmeTook)
	if globexTook < 2*time.Second {
		t.Errorf("globex's bandwidth limit did not hold: 192 KiB in %s", globexTook)
	}
	if acmeTook >= globexTook {
		t.Errorf("acme's download (%s) was not faster than globex's limited one (%s)", acmeTook, globexTook)
	}
	// Closing a tunnel frees globex's slot.
	tunnels[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, c, _ := g.rawConnect(t, globexIP, authority, "")
		if resp.StatusCode == 200 {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("globex's slot was not released: status %d", resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEgressReloadAndIdleTimeout: a config change keeps open tunnels and the
// tenant's connection count (they still count against its limit), metrics
// survive the reload, a bad config is refused naming the field, and the new
// idle timeout closes a silent tunnel.
func TestEgressReloadAndIdleTimeout(t *testing.T) {
	p := startPartner(t)
	g := startGateway(t, "az-b", "127.0.0.3")
	authority := fmt.Sprintf("api.partner.localhost:%d", p.httpPort)
	var tunnels []net.Conn
	var readers []*bufio.Reader
	for range 2 {
		resp, c, br := g.rawConnect(t, globexIP, authority, "")
		if resp.StatusCode != 200 {
			t.Fatalf("globex tunnel: status %d", resp.StatusCode)
		}
		tunnels, readers = append(tunnels, c), append(readers, br)
	}
	const handler = "/config/apps/http/servers/srv0/routes/0/handle/0/"
	status, body, err := g.inst.Admin("PATCH", handler+"idle_timeout", `"1s"`)
	if err != nil || status != 200 {
		t.Fatalf("PATCH idle_timeout: %d %s %v", status, body, err)
	}
	// Both tunnels still count: globex (max_conns 2) is still at its limit.
	if resp, c, _ := g.rawConnect(t, globexIP, authority, ""); c != nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("after reload, globex's third connection: status %d, want 429", resp.StatusCode)
	}
	// The old tunnels still work (they keep the idle timeout they started with).
	time.Sleep(1500 * time.Millisecond)
	fmt.Fprintf(tunnels[1], "GET /old HTTP/1.1\r\nHost: %s\r\n\r\n", authority)
	hr, err := http.ReadResponse(readers[1], nil)
	if err != nil {
		t.Fatalf("tunnel opened before the reload: %v", err)
	}
	hr.Body.Close()
	for _, c := range tunnels {
		c.Close()
	}
	// A new tunnel left silent is closed after about 1s.
	var c net.Conn
	deadline := time.Now().Add(5 * time.Second)
	for c == nil {
		resp, conn, _ := g.rawConnect(t, globexIP, authority, "")
		if resp.StatusCode == 200 {
			c = conn
		} else if time.Now().After(deadline) {
			t.Fatalf("globex's slots were not released: %d", resp.StatusCode)
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("idle tunnel: read %d, %v; want EOF from the gateway", n, err)
	}
	t.Logf("idle tunnel closed after %s", time.Since(start))
	// The line is written once both directions have stopped, just after.
	for i := 0; !strings.Contains(g.inst.Logs(), `"reason":"idle timeout"`); i++ {
		if i == 50 {
			t.Error("no log line with reason idle timeout")
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	status, body, _ = g.inst.Admin("GET", "/metrics", nil)
	if status != 200 || !strings.Contains(string(body), `caddy_neo_egress_connections_total{kind="connect",tenant="globex",verdict="limited",zone="az-b"}`) {
		t.Errorf("metrics after reload lack globex's limited connection:\n%s", grepLines(string(body), "caddy_neo_egress"))
	}
	// A bad config is refused with the field named, and the old one stays.
	status, body, _ = g.inst.Admin("PATCH", handler+"max_conns_per_tenant", `-3`)
	if status == 200 || !strings.Contains(string(body), "max_conns_per_tenant") {
		t.Errorf("bad max_conns_per_tenant: %d %s", status, body)
	}
	getPartner(t, g.client(acmeIP, "", "", p.roots, false), fmt.Sprintf("https://api.partner.localhost:%d/after", p.tlsPort))
	status, body, _ = g.inst.Admin("GET", "/metrics", nil)
	// Not asserted: after a refused config Caddy's admin /metrics may serve
	// the registry of the refused attempt (seen intermittently).
	t.Logf("after a refused config, /metrics (%d) shows the egress counters: %v", status,
		strings.Contains(string(body), `caddy_neo_egress_connections_total{kind="connect",tenant="acme",verdict="allowed",zone="az-b"}`))
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
