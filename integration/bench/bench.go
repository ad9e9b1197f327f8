// Command bench runs side-by-side comparisons of caddy-neo configurations
// against the same backends, alternating A B A B over several rounds so that
// machine noise hits every variant alike, and prints throughput, p50 and p99
// of each variant and its ratio to the first (the baseline).
//
//	go run ./integration/bench [-list] [-compare proxy,...] [-rounds 3] [-duration 5s] [-workers 32]
//
// Load comes from vegeta (as a library) at maximum rate with a fixed number of
// workers, over keep-alive connections to loopback addresses only. Each run is
// bounded by rounds × variants × duration. Comparisons register themselves in
// init() functions in this package (one file each).
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Variant is one side of a comparison: a name and the requests to send.
type Variant struct {
	Name    string
	Targets []vegeta.Target
	// Client, if set, sends the requests (for example one that dials loopback
	// for a *.localhost name and trusts Caddy's internal root).
	Client *http.Client
	// Baseline is the index of the variant this one's ratios are to.
	// Default 0, the first.
	Baseline int
}

// Comparison sets up its processes and returns the variants to measure, the
// first being the baseline, and a cleanup function.
type Comparison struct {
	Name        string
	Description string
	Setup       func(ctx context.Context) ([]Variant, func(), error)
}

var comparisons = map[string]Comparison{}

func register(c Comparison) { comparisons[c.Name] = c }

// Result is what one variant measured over all rounds.
type Result struct {
	Variant   string
	Baseline  int
	Requests  uint64
	Errors    uint64
	Seconds   float64
	P50, P99  time.Duration
	latencies []time.Duration
}

// Throughput is successful requests per second.
func (r *Result) Throughput() float64 {
	if r.Seconds == 0 {
		return 0
	}
	return float64(r.Requests-r.Errors) / r.Seconds
}

func main() {
	list := flag.Bool("list", false, "list the comparisons and exit")
	which := flag.String("compare", "proxy", "comma-separated comparisons to run, or all")
	rounds := flag.Int("rounds", 3, "rounds; each round runs every variant once, in A B A B order")
	duration := flag.Duration("duration", 5*time.Second, "load duration of each variant in each round")
	workers := flag.Uint64("workers", 32, "concurrent connections of the load generator")
	flag.Parse()
	if *list {
		names := sortedNames()
		for _, n := range names {
			fmt.Printf("%-16s %s\n", n, comparisons[n].Description)
		}
		return
	}
	names := strings.Split(*which, ",")
	if *which == "all" {
		names = sortedNames()
	}
	if *rounds < 1 || *rounds > 20 || *duration <= 0 || *duration > time.Minute || *workers < 1 || *workers > 1024 {
		fmt.Fprintln(os.Stderr, "bench: rounds 1-20, duration up to 1m, workers 1-1024")
		os.Exit(2)
	}
	failed := false
	for _, n := range names {
		c, ok := comparisons[n]
		if !ok {
			fmt.Fprintf(os.Stderr, "bench: no comparison %q (use -list)\n", n)
			os.Exit(2)
		}
		if err := run(c, *rounds, *duration, *workers); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", n, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

func sortedNames() []string {
	var names []string
	for n := range comparisons {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func run(c Comparison, rounds int, duration time.Duration, workers uint64) error {
	ctx := context.Background()
	variants, cleanup, err := c.Setup(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	results := make([]*Result, len(variants))
	for i, v := range variants {
		results[i] = &Result{Variant: v.Name, Baseline: v.Baseline}
	}
	fmt.Printf("== %s: %s\n   %d rounds x %d variants x %s, %d workers\n", c.Name, c.Description, rounds, len(variants), duration, workers)
	for round := 1; round <= rounds; round++ {
		for i, v := range variants {
			attack(v, duration, workers, results[i])
			fmt.Printf("   round %d %-28s %9.0f req/s so far\n", round, v.Name, results[i].Throughput())
		}
	}
	Print(os.Stdout, c.Name, results)
	return nil
}

func attack(v Variant, duration time.Duration, workers uint64, res *Result) {
	opts := []func(*vegeta.Attacker){
		vegeta.Workers(workers), vegeta.MaxWorkers(workers),
		vegeta.Connections(int(workers)), vegeta.KeepAlive(true),
		vegeta.Timeout(10 * time.Second), vegeta.Redirects(vegeta.NoFollow),
	}
	if v.Client != nil {
		opts = append(opts, vegeta.Client(v.Client))
	}
	a := vegeta.NewAttacker(opts...)
	start := time.Now()
	for r := range a.Attack(vegeta.NewStaticTargeter(v.Targets...), vegeta.Rate{Freq: 0}, duration, v.Name) {
		res.Requests++
		if r.Error != "" || r.Code < 200 || r.Code >= 500 {
			res.Errors++
			continue
		}
		res.latencies = append(res.latencies, r.Latency)
	}
	res.Seconds += time.Since(start).Seconds()
}

// Print writes the comparison table: throughput, p50, p99 and ratios to each
// variant's baseline (the first variant unless it names another).
func Print(w *os.File, name string, results []*Result) {
	for _, r := range results {
		sort.Slice(r.latencies, func(i, j int) bool { return r.latencies[i] < r.latencies[j] })
		if n := len(r.latencies); n > 0 {
			r.P50 = r.latencies[n/2]
			r.P99 = r.latencies[n*99/100]
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "variant\treq/s\tp50\tp99\terrors\tthroughput ratio\tp99 ratio\tto\t\n")
	for _, r := range results {
		base := results[0]
		if r.Baseline > 0 && r.Baseline < len(results) {
			base = results[r.Baseline]
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%d\t%.3fx\t%.3fx\t%s\t\n", r.Variant, r.Throughput(),
			r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Errors,
			r.Throughput()/base.Throughput(), float64(r.P99)/float64(base.P99), base.Variant)
	}
	tw.Flush()
	fmt.Fprintf(w, "   (%s: measured side by side in this run)\n\n", name)
}
