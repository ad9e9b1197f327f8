package ratelimit

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// FuzzKey builds keys from arbitrary templates, client addresses, hosts and
// header values (what a client controls). Properties: no panic; for IPv4
// clients at /32 the key is exactly what Caddy's replacer makes of the
// template; an IPv6 client's key depends only on its /64.
func FuzzKey(f *testing.F) {
	f.Add("{remote_host}", "192.0.2.1:1234", "acme-dev.apps.test", "alice")
	f.Add("{http.request.remote.host}/{http.request.header.X-User}", "[2001:db8::1]:443", "Acme.", "bob")
	f.Add(`a\{b\}{http.request.host}{`, "10.0.0.1:1", "x:80", "")
	f.Add("{neo.rate_limit.host}/{neo.login.user}{unknown}", "127.0.0.1:9", "SHOP.ACME.TEST.:8443", "Carol")
	f.Add("{{}}{\\}", "[::ffff:1.2.3.4]:5", "", "x")
	f.Add("{http.vars.client_ip}-{http.request.remote}", "/unix/socket", "h", "y")
	f.Fuzz(func(t *testing.T, tmpl, remote, host, user string) {
		if len(tmpl) > 512 {
			return
		}
		// Caddyfile shorthands, as the Caddyfile adapter expands them.
		tmpl = strings.ReplaceAll(tmpl, "{remote_host}", "{http.request.remote.host}")
		kt, err := parseKey(tmpl, 32, 64)
		repl := caddy.NewReplacer()
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		r.Host = host
		r.Header.Set("X-User", user)
		r = caddyhttp.PrepareRequest(r, repl, nil, nil)
		repl.Set("neo.login.user", user)
		want, werr := repl.ReplaceOrErr(tmpl, false, false)
		if (err != nil) != (werr != nil) {
			t.Fatalf("template %q: our error %v, the replacer's %v", tmpl, err, werr)
		}
		if err != nil {
			return
		}
		h := &Handler{}
		ri := reqInfo{r: r, repl: repl}
		ri.host, ri.tenant = h.resolveHost(r.Host)
		repl.Set(PlaceholderHost, ri.host)
		repl.Set(PlaceholderTenant, ri.tenant)
		want = repl.ReplaceAll(tmpl, "")
		got := string(kt.appendKey(nil, &ri))
		ap, perr := netip.ParseAddrPort(remote)
		v4 := perr == nil && ap.Addr().Is4()
		if (v4 || !kt.usesClient()) && got != want {
			t.Fatalf("template %q, remote %q: key %q, replacer %q", tmpl, remote, got, want)
		}
		if perr == nil && ap.Addr().Is6() && !ap.Addr().Is4In6() && kt.usesClient() {
			// Another address of the same /64 gives the same key.
			b := ap.Addr().As16()
			b[15] ^= 0xff
			b[9] ^= 0x5a
			r2 := r.Clone(r.Context())
			r2.RemoteAddr = netip.AddrPortFrom(netip.AddrFrom16(b), 1).String()
			ri2 := ri
			ri2.r = r2
			if got2 := string(kt.appendKey(nil, &ri2)); got2 != got {
				t.Fatalf("same /64, different keys: %q and %q", got, got2)
			}
		}
	})
}

// FuzzParseCounter reads arbitrary counter subjects and bodies (a NATS
// message any edge could have sent): no panic, and what it accepts
// round-trips.
func FuzzParseCounter(f *testing.F) {
	f.Add("neo_rl", "neo_rl.neo_client.29333.00ff00ff00ff00ff", []byte(`{"val":"17"}`))
	f.Add("neo_rl", "neo_rl.z.-1.00ff00ff00ff00ff", []byte(`{"val":"-3"}`))
	f.Add("a.b", "a.b.z.1.0123456789abcdef", []byte(`{"val":"123456789012345678901234567890"}`))
	f.Add("neo_rl", "neo_rl..1.x", []byte(`{`))
	f.Fuzz(func(t *testing.T, prefix, subject string, body []byte) {
		zone, win, key, total, ok := parseCounter(prefix, subject, body)
		if !ok {
			return
		}
		if zone == "" || strings.Contains(zone, ".") || win < 0 || total > 1<<32-1 {
			t.Fatalf("accepted %q %q: zone %q window %d key %x total %d", subject, body, zone, win, key, total)
		}
	})
}

func TestParseCount(t *testing.T) {
	for in, want := range map[string]uint64{"0": 0, "17": 17, "-5": 0, "4294967295": 1<<32 - 1, "99999999999999999999999": 1<<32 - 1} {
		if got, ok := parseCount(in); !ok || got != want {
			t.Errorf("parseCount(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "-", "1e3", "+3", " 3"} {
		if _, ok := parseCount(in); ok {
			t.Errorf("parseCount(%q) accepted", in)
		}
	}
}

// usesClient reports whether the key holds a client address.
func (kt *keyTemplate) usesClient() bool {
	for _, p := range kt.parts {
		if p.kind == partRemoteHost || p.kind == partClientIP {
			return true
		}
	}
	return false
}
