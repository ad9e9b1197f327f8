package wafaccel

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/collection"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"

	"github.com/projectneo/caddy-neo/internal/wafbench"
)

// multipartCTE is a multipart request CRS 922120 must always block: its
// first part carries a Content-Transfer-Encoding header (CRS regression test
// 922120-1), and a second part makes MULTIPART_PART_HEADERS a collection of
// two keys, listed in map order.
func multipartCTE() request {
	body := "--b\r\nContent-Disposition: form-data; name=\"flavors\"\r\nContent-Transfer-Encoding: 8bit\r\nContent-Type: text/plain\r\n\r\nPineapple\r\n--b\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\ny\r\n--b--\r\n"
	return request{Method: "POST", URI: "/post", Version: "HTTP/1.1", Body: []byte(body), Headers: [][2]string{
		{"Host", "localhost"}, {"User-Agent", "neo-test"}, {"Accept", "*/*"},
		{"Content-Type", "multipart/form-data; boundary=b"}, {"Content-Length", fmt.Sprint(len(body))}}}
}

// edgeLike is the edge's WAF (CRS at paranoia 1, blocking, accelerated),
// with neoDistinctKeys when fix is set.
func edgeLike(t testing.TB, fix bool) coraza.WAF {
	d := ""
	if fix {
		d = DistinctKeysDirectives
	}
	return buildWAF(t, d+"Include @coraza.conf-recommended\nSecRuleEngine On\nInclude @crs-setup.conf.example\n"+
		SkipDirectivesBefore+"Include @owasp_crs/*.conf\n"+SkipDirectivesAfter, true)
}

// TestDistinctKeysMultipart: 1,000 repetitions of the multipart request are
// all blocked with neoDistinctKeys, accelerated or not; without it some
// pass (Coraza's transformation cache hands 922120 the other header of the
// part), which shows the test can fail.
func TestDistinctKeysMultipart(t *testing.T) {
	r := multipartCTE()
	count := func(waf coraza.WAF, n int) int {
		blocked := 0
		for i := 0; i < n; i++ {
			if v := judge(waf, r); v.status == 403 && slices.Contains(v.ids, 922120) {
				blocked++
			}
		}
		return blocked
	}
	for _, accel := range []bool{true, false} {
		prev := SetEnabled(accel)
		if n := count(edgeLike(t, true), 1000); n != 1000 {
			t.Errorf("accelerator %v: %d of 1000 blocked by 922120, want all", accel, n)
		}
		SetEnabled(prev)
	}
	if n := count(edgeLike(t, false), 1000); n == 1000 {
		t.Errorf("without neoDistinctKeys all 1000 were blocked: the case no longer shows Coraza's cache bug")
	} else {
		t.Logf("without neoDistinctKeys: %d of 1000 blocked", n)
	}
}

// TestDistinctKeysRepeatedHeader: the same cache with a repeated request
// header (one key, two values) among other headers. The first rule caches
// the lowercased headers by position, the second must see the attack in
// whichever position the map order puts it.
func TestDistinctKeysRepeatedHeader(t *testing.T) {
	rules := `SecRuleEngine On
SecRule REQUEST_HEADERS "@rx neverthere" "id:10,phase:1,pass,t:none,t:lowercase"
SecRule REQUEST_HEADERS "@rx evil" "id:11,phase:1,deny,status:403,t:none,t:lowercase"
`
	r := request{Method: "GET", URI: "/", Version: "HTTP/1.1", Headers: [][2]string{
		{"Host", "a.example"}, {"X-Tag", "fine"}, {"X-Tag", "EVIL"}, {"Accept", "*/*"}, {"User-Agent", "x"}}}
	count := func(waf coraza.WAF) int {
		n := 0
		for i := 0; i < 1000; i++ {
			if judge(waf, r).status == 403 {
				n++
			}
		}
		return n
	}
	if n := count(buildWAF(t, DistinctKeysDirectives+rules, true)); n != 1000 {
		t.Errorf("with neoDistinctKeys: %d of 1000 blocked, want all", n)
	}
	if n := count(buildWAF(t, rules, true)); n == 1000 {
		t.Errorf("without neoDistinctKeys all 1000 were blocked: the case does not show the bug")
	} else {
		t.Logf("without neoDistinctKeys: %d of 1000 blocked", n)
	}
}

// FuzzDistinctKeys: on arbitrary multipart parts and repeated headers,
// neoDistinctKeys changes no key or value text and no value's place in its
// key's list, and leaves no key pointer shared.
func FuzzDistinctKeys(f *testing.F) {
	f.Add("a", "b", "x: 1", "y: 2", "")
	f.Add("", "", "Content-Transfer-Encoding: 8bit", "z: 3", "A")
	f.Fuzz(func(t *testing.T, n1, n2, h1, h2, hk string) {
		waf, err := coraza.NewWAF(coraza.NewWAFConfig().WithDirectives("SecRuleEngine On\nSecRequestBodyAccess On\n" + DistinctKeysDirectives))
		if err != nil {
			t.Fatal(err)
		}
		tx := waf.NewTransaction()
		defer tx.Close()
		st := tx.(plugintypes.TransactionState)
		v := st.Variables()
		for _, c := range []collection.Map{v.MultipartPartHeaders(), v.RequestHeaders()} {
			c.Add(n1, h1)
			c.Add(n1, h2)
			c.Add(n2, h2)
			c.Add(hk, h1)
		}
		before := snapshot(v.MultipartPartHeaders(), v.RequestHeaders())
		tx.ProcessURI("/", "GET", "HTTP/1.1")
		tx.ProcessRequestHeaders()
		_, _ = tx.ProcessRequestBody()
		if after := snapshot(v.MultipartPartHeaders(), v.RequestHeaders()); after != before {
			t.Fatalf("collections changed:\n%s\n%s", before, after)
		}
		for _, c := range []collection.Map{v.MultipartPartHeaders(), v.RequestHeaders()} {
			seen := map[uintptr]bool{}
			for _, md := range c.FindAll() {
				p := keyPtr(md.Key())
				if seen[p] {
					t.Fatalf("%s: key %q shares its memory with another value", c.Name(), md.Key())
				}
				seen[p] = true
			}
		}
	})
}

// snapshot describes collections: per key (as listed), the values in order.
func snapshot(cols ...collection.Map) string {
	var b strings.Builder
	for _, c := range cols {
		var keys []string
		for _, md := range c.FindAll() {
			keys = append(keys, md.Key())
		}
		slices.Sort(keys)
		keys = slices.Compact(keys)
		for _, k := range keys {
			var vals []string
			if k == "" {
				for _, md := range c.FindRegex(emptyKey) {
					vals = append(vals, md.Key()+"="+md.Value())
				}
			} else {
				for _, md := range c.FindString(k) {
					vals = append(vals, md.Key()+"="+md.Value())
				}
			}
			fmt.Fprintf(&b, "%s[%q]=%q\n", c.Name(), k, vals)
		}
	}
	return b.String()
}

func TestDistinctKeysBenchConfig(t *testing.T) {
	if wafbench.DistinctKeys != DistinctKeysDirectives {
		t.Fatal("wafbench.DistinctKeys differs from DistinctKeysDirectives")
	}
	if !strings.HasPrefix(wafbench.Directives("", ""), DistinctKeysDirectives) {
		t.Fatal("the benchmarked WAF does not run neoDistinctKeys first")
	}
}
