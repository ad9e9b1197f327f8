// Command identity measures what identity costs at the edge, side by side in
// one run, on the caddy binary built from this repository:
//
//   - a request to a private app with a valid access token (neo_identity
//     verifies it: a cached verification, as for every request after a
//     token's first) against the same request to a public app (no identity;
//     with and without the token in its Authorization header),
//     both through neo_route and reverse_proxy to the same replica: edge CPU
//     per request (from /proc) and throughput, and their ratios;
//   - sign-ins (POST /identity/login, a built-in user whose password the
//     admin API stored as a bcrypt hash) and refreshes (POST /identity/token,
//     grant_type=refresh_token, rotating) per second of edge CPU, that is
//     per core.
//
// Variants alternate in slices (-slice) within each round, so a change of
// the machine's speed weighs on all alike. Loopback only; every loop is
// bounded by -rounds × variants × -d.
//
//	go run ./integration/bench/identity [-rounds 3] [-d 5s] [-slice 1s] [-workers 16]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/projectneo/caddy-neo/integration/harness"
)

const replicaBody = `{"id":42,"name":"item 42","price":{"amount":1999,"currency":"EUR"},"tags":["a","b","c"],"stock":{"az-a":12,"az-b":7},"updated":"2026-11-30T10:00:00Z","links":{"self":"/web/items/42"}}`

func main() {
	rounds := flag.Int("rounds", 3, "rounds")
	dur := flag.Duration("d", 5*time.Second, "load time of each variant in each round")
	slice := flag.Duration("slice", time.Second, "alternate the variants in slices this long")
	workers := flag.Int("workers", 16, "concurrent connections")
	flag.Parse()
	if *rounds < 1 || *rounds > 20 || *dur <= 0 || *dur > time.Minute || *workers < 1 || *workers > 256 || *slice <= 0 {
		fmt.Fprintln(os.Stderr, "identity bench: rounds 1-20, d up to 1m, workers 1-256")
		os.Exit(2)
	}
	if err := run(*rounds, *dur, *slice, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "identity bench:", err)
		os.Exit(1)
	}
}

type variant struct {
	name string
	// do sends one request with worker w's client; ok reports success.
	do       func(w int, c *http.Client) bool
	reqs     atomic.Int64
	errs     atomic.Int64
	cpuTicks int64
	seconds  float64
}

func run(rounds int, dur, slice time.Duration, workers int) error {
	ports, err := harness.FreePorts(4)
	if err != nil {
		return err
	}
	adminRep, rep, admin, edge := ports[0], ports[1], ports[2], ports[3]
	// The replica answers a fixed body; it runs in this process, whose CPU
	// is not counted (only the edge's is).
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", rep))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, replicaBody)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	_ = adminRep
	inst, err := harness.StartProcess(harness.Options{Config: fmt.Sprintf(`{
	admin 127.0.0.1:%d
	auto_https off
	persist_config off
	log {
		level ERROR
	}
	neo_identity
	neo {
		zone az-a
		stages dev prod
		store file %s
	}
}
http://:%d {
	bind 127.0.0.1
	neo_signin
	neo_route
	@private expression `+"`{neo.public} != \"true\"`"+`
	route @private {
		neo_identity
	}
	reverse_proxy {
		dynamic neo
	}
}`, admin, filepathTemp(), edge), Admin: fmt.Sprintf("127.0.0.1:%d", admin), WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", edge)}})
	if err != nil {
		return err
	}
	defer inst.Stop()
	r := fmt.Sprintf(`{"replicas":[{"address":"127.0.0.1:%d"}]}`, rep)
	tenant := fmt.Sprintf(`{"apps":{"pub":{"public":true,"stages":{"dev":%s}},"priv":{"stages":{"dev":%s}}},
		"identity":{"stages":{"dev":{"users":{"alice":{"password":"alice-password"}}}}}}`, r, r)
	if st, body, err := inst.Admin("PUT", "/neo/tenants/acme", tenant); err != nil || st != 201 {
		return fmt.Errorf("tenant: %d %s %v", st, body, err)
	}
	host := "acme-dev.apps.localhost"
	base := fmt.Sprintf("http://127.0.0.1:%d", edge)
	get := func(c *http.Client, path string, hdr ...string) (int, http.Header, string) {
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Host = host
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, nil, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	post := func(c *http.Client, path string, form url.Values, hdr ...string) (int, http.Header, string) {
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(form.Encode()))
		req.Host = host
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, nil, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	clients := make([]*http.Client, workers)
	for i := range clients {
		clients[i] = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	// The sign-in form's anti-forgery pair, and one session per worker.
	_, h, page := get(clients[0], "/identity/login")
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	csrfCookie := cookie(h, "__Host-neo_csrf")
	if m == nil || csrfCookie == "" {
		return fmt.Errorf("sign-in page: %.200q", page)
	}
	login := url.Values{"username": {"alice"}, "password": {"alice-password"}, "csrf": {m[1]}, "return": {"/priv/"}}
	signIn := func(c *http.Client) (access, refresh string, ok bool) {
		st, h, _ := post(c, "/identity/login", login, "Cookie", "__Host-neo_csrf="+csrfCookie)
		return cookie(h, "__Host-neo_at"), cookie(h, "__Host-neo_rt"), st == http.StatusSeeOther
	}
	access, _, ok := signIn(clients[0])
	if !ok {
		return fmt.Errorf("sign-in failed")
	}
	refresh := make([]string, workers)
	for i := range refresh {
		if _, refresh[i], ok = signIn(clients[i]); !ok {
			return fmt.Errorf("sign-in failed")
		}
	}
	if st, _, body := get(clients[0], "/priv/items?id=42", "Authorization", "Bearer "+access); st != 200 || body != replicaBody {
		return fmt.Errorf("private app with the token: %d %.100q", st, body)
	}
	variants := []*variant{
		{name: "public app, no identity", do: func(_ int, c *http.Client) bool {
			st, _, _ := get(c, "/pub/items?id=42")
			return st == 200
		}},
		{name: "public app, same token sent", do: func(_ int, c *http.Client) bool {
			st, _, _ := get(c, "/pub/items?id=42", "Authorization", "Bearer "+access)
			return st == 200
		}},
		{name: "private app, valid token", do: func(_ int, c *http.Client) bool {
			st, _, _ := get(c, "/priv/items?id=42", "Authorization", "Bearer "+access)
			return st == 200
		}},
		{name: "sign-in (bcrypt cost 11)", do: func(_ int, c *http.Client) bool {
			_, _, ok := signIn(c)
			return ok
		}},
		{name: "refresh (rotation)", do: func(w int, c *http.Client) bool {
			st, _, body := post(c, "/identity/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh[w]}})
			var tr struct {
				RefreshToken string `json:"refresh_token"`
			}
			if st != 200 || json.Unmarshal([]byte(body), &tr) != nil {
				return false
			}
			refresh[w] = tr.RefreshToken
			return true
		}},
	}
	pid := inst.Pid()
	fmt.Printf("== identity: %d rounds x %d variants x %s in %s slices, %d workers, caddy pid %d\n", rounds, len(variants), dur, slice, workers, pid)
	for round := 1; round <= rounds; round++ {
		for done := time.Duration(0); done < dur; done += slice {
			for _, v := range variants {
				d := min(slice, dur-done)
				before := cpuTicks(pid)
				start := time.Now()
				load(v, clients, d)
				v.seconds += time.Since(start).Seconds()
				v.cpuTicks += cpuTicks(pid) - before
			}
		}
		fmt.Printf("   round %d done\n", round)
	}
	fmt.Printf("%-28s %10s %8s %14s %16s\n", "variant", "req/s", "errors", "edge CPU/req", "per CPU-second")
	for _, v := range variants {
		n := v.reqs.Load() - v.errs.Load()
		cpu := float64(v.cpuTicks) / 100 // seconds (100 ticks a second)
		fmt.Printf("%-28s %10.0f %8d %11.1f µs %16.0f\n", v.name, float64(n)/v.seconds, v.errs.Load(), cpu*1e6/float64(max(n, 1)), float64(n)/max(cpu, 0.01))
	}
	perReq := func(v *variant) float64 { return float64(v.cpuTicks) / float64(max(v.reqs.Load()-v.errs.Load(), 1)) }
	rate := func(v *variant) float64 { return float64(v.reqs.Load()-v.errs.Load()) / v.seconds }
	priv := variants[2]
	for _, pub := range variants[:2] {
		fmt.Printf("private app with token / %s: edge CPU per request %.3fx, throughput %.3fx\n", pub.name, perReq(priv)/perReq(pub), rate(priv)/rate(pub))
	}
	fmt.Println("(measured side by side in this run)")
	return nil
}

func load(v *variant, clients []*http.Client, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	for w, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				v.reqs.Add(1)
				if !v.do(w, c) {
					v.errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
}

func cookie(h http.Header, name string) string {
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func cpuTicks(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

func filepathTemp() string {
	d, _ := os.MkdirTemp("", "neo-identity-bench-")
	return d
}
