package ratelimit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// startCaddy runs Caddy in this process with a Caddyfile whose site listens on
// a free loopback port (PORT in the Caddyfile), and returns its address.
// The config is the real one: the neo app, the matchers, this handler.
func startCaddy(t *testing.T, caddyfile string) (addr string, logFile string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ln.Close()
	logFile = filepath.Join(t.TempDir(), "log.json")
	cf := strings.ReplaceAll(caddyfile, "PORT", port)
	cf = strings.Replace(cf, "{\n", "{\n\tadmin off\n\tlog {\n\t\toutput file "+logFile+"\n\t\tformat json\n\t\tlevel INFO\n\t}\n", 1)
	cfg, warn, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), nil)
	if err != nil {
		t.Fatalf("adapt: %v\n%s", err, cf)
	}
	for _, w := range warn {
		t.Logf("warning: %v", w)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	return addr, logFile
}

const neoGlobal = `{
	neo {
		zone az-a
		platform_domain platform.test
		runtime_domain apps.test
		stages dev prod
		tenant acme {
			app orders {
				public
				stage dev {
					replica 127.0.0.1:1 az-a
				}
				stage prod {
					replica 127.0.0.1:1 az-a
				}
			}
			domain shop.acme.test prod
		}
		tenant globex {
			app shop {
				stage prod {
					replica 127.0.0.1:1 az-a
				}
			}
		}
	}
}
`

type client struct {
	t    *testing.T
	addr string
	c    *http.Client
}

func newClient(t *testing.T, addr, src string) *client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: false}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t, addr, &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

func (c *client) get(host, path string) (int, http.Header, string) {
	c.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+c.addr+path, nil)
	req.Host = host
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatalf("GET %s%s: %v", host, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// Issue 16: the host zone counts the canonical host the router resolves,
// whatever the spelling: case, trailing dot, explicit port.
func TestHostSpellingsCountedTogether(t *testing.T) {
	addr, _ := startCaddy(t, neoGlobal+`
http://:PORT {
	neo_rate_limit {
		zone neo_host {
			key {neo.rate_limit.host}
			events 6
			window 1h
		}
	}
	respond "{neo.rate_limit.tenant} {neo.rate_limit.host}"
}
`)
	_, port, _ := net.SplitHostPort(addr)
	c := newClient(t, addr, "")
	spellings := []string{"acme-dev.apps.test", "ACME-DEV.APPS.TEST", "acme-dev.apps.test.", "acme-dev.apps.test:" + port, "Acme-Dev.Apps.Test.:" + port, "acme-dev.apps.test:80"}
	for _, h := range spellings {
		st, _, body := c.get(h, "/orders/")
		if st != 200 || body != "acme acme-dev.apps.test" {
			t.Fatalf("%s: %d %q, want 200 \"acme acme-dev.apps.test\"", h, st, body)
		}
	}
	// Six spellings, one count: the next request of any spelling is limited.
	for _, h := range spellings {
		if st, hdr, _ := c.get(h, "/orders/"); st != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
			t.Fatalf("%s after the limit: %d, Retry-After %q", h, st, hdr.Get("Retry-After"))
		}
	}
	// Other hosts of the same tenant (another stage, the custom domain) and
	// other tenants have their own counts.
	for _, h := range []string{"acme.apps.test", "SHOP.acme.test.", "globex.apps.test", "acme.platform.test"} {
		if st, _, body := c.get(h, "/"); st != 200 {
			t.Fatalf("%s: %d %s", h, st, body)
		}
	}
	// Unknown hosts count by their normalised name; a Host that is no DNS
	// name by the empty key.
	if st, _, body := c.get("Other.Example.", "/"); st != 200 || body != " other.example" {
		t.Fatalf("unknown host: %d %q", st, body)
	}
}

// 429 with Retry-After, one log line with tenant and zone per limited key
// and window (not per request), and {neo.rate_limit.zone} for handle_errors.
func TestLimitedResponseAndLog(t *testing.T) {
	addr, logFile := startCaddy(t, neoGlobal+`
http://:PORT {
	neo_rate_limit {
		zone per_client {
			key {remote_host}
			events 3
			window 1h
		}
	}
	respond "ok"
	handle_errors 429 {
		respond "slow down ({neo.rate_limit.zone})" 429
	}
}
`)
	a, b := newClient(t, addr, "127.0.0.2"), newClient(t, addr, "127.0.0.3")
	for i := range 20 {
		st, hdr, body := a.get("acme-dev.apps.test", "/orders/")
		switch {
		case i < 3 && st != 200:
			t.Fatalf("request %d: %d", i, st)
		case i >= 3:
			if st != 429 || body != "slow down (per_client)" {
				t.Fatalf("request %d: %d %q", i, st, body)
			}
			s, err := strconv.Atoi(hdr.Get("Retry-After"))
			// The sliding window: 3 events in the first hour still weigh
			// 3*(1-e/1h) at e into the next, so the next event fits at
			// 1h20m (3*2/3 + 1 = 3).
			if err != nil || s < 4790 || s > 4800 {
				t.Fatalf("Retry-After %q, want 4800 (80 minutes)", hdr.Get("Retry-After"))
			}
		}
	}
	if st, _, _ := b.get("globex.apps.test", "/"); st != 200 {
		t.Fatalf("another client: %d", st)
	}
	for range 5 {
		b.get("globex.apps.test", "/")
	}
	lines := limitLines(t, logFile)
	if len(lines) != 2 {
		t.Fatalf("%d log lines for 2 limited clients, want 2 (one per key and window): %v", len(lines), lines)
	}
	want := map[string]string{"127.0.0.2": "acme", "127.0.0.3": "globex"}
	for _, l := range lines {
		if l["zone"] != "per_client" || l["tenant"] != want[l["client"].(string)] || l["retry_after"] == nil {
			t.Fatalf("log line %v", l)
		}
	}
}

// limitLines returns the "rate limit exceeded" log lines, waiting for the
// logger to write them (it writes asynchronously to the file).
func limitLines(t *testing.T, file string) []map[string]any {
	t.Helper()
	var out []map[string]any
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "rate limit exceeded" {
			out = append(out, m)
		}
	}
	return out
}

// A request one zone limits is not counted by the zones that allowed it:
// a client stopped by the host zone keeps its own budget.
func TestLimitedRequestNotCounted(t *testing.T) {
	addr, _ := startCaddy(t, neoGlobal+`
http://:PORT {
	neo_rate_limit {
		zone client {
			key {remote_host}
			events 5
			window 1h
		}
		zone host {
			key {neo.rate_limit.host}
			events 3
			window 1h
		}
	}
	respond "ok"
}
`)
	c := newClient(t, addr, "127.0.0.4")
	for i := range 10 {
		if st, _, _ := c.get("acme-dev.apps.test", "/"); (i < 3) != (st == 200) {
			t.Fatalf("request %d to the limited host: %d", i, st)
		}
	}
	// Seven limited requests did not count in the client zone: 2 left.
	ok := 0
	for range 5 {
		if st, _, _ := c.get("globex.apps.test", "/"); st == 200 {
			ok++
		}
	}
	if ok != 2 {
		t.Fatalf("%d requests allowed to another host, want 2 (limit 5, 3 used)", ok)
	}
}

// IPv6 clients are keyed by prefix (default /64): every address of one /64
// shares a count, another /64 has its own.
func TestIPv6Prefix(t *testing.T) {
	for name, tc := range map[string]struct {
		v6   int
		a, b string
		same bool
	}{
		"/64 same":       {64, "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true},
		"/64 other":      {64, "2001:db8:1:2::1", "2001:db8:1:3::1", false},
		"/48 wide":       {48, "2001:db8:1:2::1", "2001:db8:1:ffff::1", true},
		"/128 exact":     {128, "2001:db8::1", "2001:db8::2", false},
		"mapped v4":      {64, "::ffff:192.0.2.1", "192.0.2.1", true},
		"v4 not v6 rule": {64, "192.0.2.1", "192.0.2.2", false},
	} {
		t.Run(name, func(t *testing.T) {
			ka := ClientKey(tc.a, 32, tc.v6)
			kb := ClientKey(tc.b, 32, tc.v6)
			if (ka == kb) != tc.same {
				t.Fatalf("%s -> %q, %s -> %q: same=%v, want %v", tc.a, ka, tc.b, kb, ka == kb, tc.same)
			}
		})
	}
	if k := ClientKey("2001:db8:1:2:3:4:5:6", 32, 64); k != "2001:db8:1:2::/64" {
		t.Fatalf("key %q", k)
	}
}

func ExampleClientKey() {
	fmt.Println(ClientKey("2001:db8:1:2:3:4:5:6", 32, 64))
	fmt.Println(ClientKey("192.0.2.7", 24, 64))
	// Output:
	// 2001:db8:1:2::/64
	// 192.0.2.0/24
}
