package neo

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// BenchmarkAccess: the cost neo_access adds to a routed request (metrics by
// status class with a latency histogram, the access line's fields), side by
// side in one run: neo_route alone vs neo_access + neo_route, for the
// smallest and the largest fleet (NEO_BENCH_MAX_TENANTS) and both request
// mixes of BenchmarkRoute, and a request stopped before routing (as by the
// WAF: neo_access resolves its host's tenant itself). The summary prints
// ns/request, the ratio to neo_route alone, and the added cost at the large
// fleet relative to the small one.
//
//	go test -run '^$' -bench Access -benchtime 400x ./modules/neo/
func BenchmarkAccess(b *testing.B) {
	sizes := benchSizes()
	sizes = []int{sizes[0], sizes[len(sizes)-1]}
	for _, n := range sizes {
		benchApp(b, n)
	}
	type run struct {
		name  string
		serve func(*http.Request) error
		hosts []string
		d     time.Duration
	}
	blocked := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		return caddyhttp.Error(http.StatusForbidden, nil)
	})
	ok := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	})
	w := nopWriter{http.Header{}}
	var runs []*run
	for _, mix := range benchMixes {
		for _, n := range sizes {
			a := benchApp(b, n)
			a.metrics = &metrics{}
			route := &RouteHandler{app: a, logger: zap.NewNop()}
			acc := &AccessHandler{app: a, metrics: a.metrics, logger: zap.NewNop()}
			afterAccess := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return route.ServeHTTP(w, r, ok) })
			hosts := benchHosts(n, 1024, mix.hot)
			runs = append(runs,
				&run{name: fmt.Sprintf("route/mix=%s/tenants=%d", mix.name, n), hosts: hosts,
					serve: func(r *http.Request) error { return route.ServeHTTP(w, r, ok) }},
				&run{name: fmt.Sprintf("access+route/mix=%s/tenants=%d", mix.name, n), hosts: hosts,
					serve: func(r *http.Request) error { return acc.ServeHTTP(w, r, afterAccess) }},
				&run{name: fmt.Sprintf("access+blocked/mix=%s/tenants=%d", mix.name, n), hosts: hosts,
					serve: func(r *http.Request) error { _ = acc.ServeHTTP(w, r, blocked); return nil }},
			)
		}
	}
	res := map[string]time.Duration{}
	b.Run("side-by-side", func(b *testing.B) {
		runtime.GC()
		b.ReportAllocs()
		b.ResetTimer()
		sideBySide(b, len(runs), func(k int) {
			r := runs[k]
			reqs := accessRequests(r.hosts)
			r.d, _ = timed(r.d, 0, func() {
				for _, q := range reqs {
					if err := r.serve(q); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
		for _, r := range runs {
			res[r.name] = r.d / time.Duration(b.N*1024)
		}
	})
	if len(res) == 0 || res[runs[0].name] == 0 {
		return
	}
	ns := func(k string) float64 { return float64(res[k].Nanoseconds()) }
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\nmix\ttenants\tneo_route ns\tneo_access+neo_route ns\tratio\tadded ns\tadded vs %d tenants\tneo_access, blocked before routing, ns\t\n", sizes[0])
	for _, mix := range benchMixes {
		base := ns(fmt.Sprintf("access+route/mix=%s/tenants=%d", mix.name, sizes[0])) - ns(fmt.Sprintf("route/mix=%s/tenants=%d", mix.name, sizes[0]))
		for _, n := range sizes {
			route, acc := ns(fmt.Sprintf("route/mix=%s/tenants=%d", mix.name, n)), ns(fmt.Sprintf("access+route/mix=%s/tenants=%d", mix.name, n))
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.2fx\t%.0f\t%.2fx\t%.0f\t\n", mix.name, n, route, acc, acc/route, acc-route, (acc-route)/base,
				ns(fmt.Sprintf("access+blocked/mix=%s/tenants=%d", mix.name, n)))
		}
	}
	tw.Flush()
}

// accessRequests are freshRequests with the access log's extra fields in
// their context, as a server with an access log gives them.
func accessRequests(hosts []string) []*http.Request {
	reqs := freshRequests(hosts)
	for i, r := range reqs {
		ctx := context.WithValue(r.Context(), caddyhttp.ExtraLogFieldsCtxKey, new(caddyhttp.ExtraLogFields))
		reqs[i] = r.WithContext(ctx)
	}
	return reqs
}
