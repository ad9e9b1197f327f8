package neo

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestRouteDropsIdentityCookies: whatever route neo_route is on, no
// upstream receives a cookie of the identity's namespace (the edge's WAF
// does not inspect them); the request's other cookies pass unchanged.
func TestRouteDropsIdentityCookies(t *testing.T) {
	h := testHandler(t)
	_, r, err, _ := serve(t, h, "acme-dev.apps.localhost", "/orders/", http.Header{"Cookie": {
		"theme=dark; __Host-neo_at=x' or 1=1; lang=en", "__Host-neo_rt=a.1.b", "__Host-neo_anything=<script>; cart=3"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Header["Cookie"]; !slices.Equal(got, []string{"theme=dark; lang=en", "cart=3"}) {
		t.Fatalf("Cookie headers upstream: %q", got)
	}
	_, r, _, _ = serve(t, h, "acme-dev.apps.localhost", "/orders/", http.Header{"Cookie": {"__Host-neo_at=x"}})
	if _, ok := r.Header["Cookie"]; ok {
		t.Fatalf("an emptied Cookie header stays: %q", r.Header["Cookie"])
	}
}

// FuzzTakeIdentityCookies: after TakeIdentityCookies no Cookie header holds
// a cookie named with the prefix, every cookie taken had the prefix, and
// every other cookie stays.
func FuzzTakeIdentityCookies(f *testing.F) {
	for _, s := range []string{"a=1; __Host-neo_at=x", "__Host-neo_rt=;;; b", " __Host-neo_x = 1 ;c=2", "=;=", "__host-neo_at=1"} {
		f.Add(s, "d=4")
	}
	f.Fuzz(func(t *testing.T, c1, c2 string) {
		names := func(hs []string) (own, other []string) {
			for _, h := range hs {
				for part := range strings.SplitSeq(h, ";") {
					name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
					name = strings.TrimSpace(name)
					if name == "" {
						continue
					}
					if strings.HasPrefix(name, IdentityCookiePrefix) {
						own = append(own, name)
					} else {
						other = append(other, name)
					}
				}
			}
			return own, other
		}
		h := http.Header{"Cookie": {c1, c2}}
		wantOwn, wantOther := names(h["Cookie"])
		var took []string
		TakeIdentityCookies(h, func(name, _ string) { took = append(took, name) })
		gotOwn, gotOther := names(h["Cookie"])
		if len(gotOwn) > 0 {
			t.Fatalf("identity cookies left: %q", gotOwn)
		}
		if !slices.Equal(took, wantOwn) && len(wantOwn) > 0 {
			t.Fatalf("took %q, want %q", took, wantOwn)
		}
		if len(wantOwn) > 0 && !slices.Equal(gotOther, wantOther) {
			t.Fatalf("other cookies %q, want %q", gotOther, wantOther)
		}
	})
}
