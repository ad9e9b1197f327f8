// Package natstest runs real nats-servers inside test processes (never a
// mock): one place for the options every test wants (loopback only, no
// signal handlers, no logs) and for waiting until the server is ready; and
// checks of what the HTTP-over-NATS chain delivers.
package natstest

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Start runs a nats-server on 127.0.0.1:port (-1: a random free port). With
// storeDir set, JetStream is on and keeps its data there. The server shuts
// down when the test ends.
func Start(t testing.TB, port int, storeDir string) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: storeDir != "", StoreDir: storeDir, NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("nats server not ready within 10s")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// EventGaps reads a server-sent event stream to its end and checks that it
// held want events, produced every apart, and that they reached the client
// as produced, not buffered to the end: the first arrived at least half of
// every before the last (buffered, they arrive together). Only a lower
// bound on the spread: on a loaded machine a single event may be late.
func EventGaps(t testing.TB, body io.Reader, want int, every time.Duration) {
	t.Helper()
	var times []time.Time
	buf := make([]byte, 4096)
	var acc string
	for {
		n, err := body.Read(buf)
		acc += string(buf[:n])
		for strings.Contains(acc, "\n\n") {
			_, acc, _ = strings.Cut(acc, "\n\n")
			times = append(times, time.Now())
		}
		if err != nil {
			break
		}
	}
	if len(times) != want {
		t.Fatalf("got %d events, want %d", len(times), want)
	}
	if want > 1 {
		if span := times[len(times)-1].Sub(times[0]); span < every/2 {
			t.Fatalf("%d events produced %v apart arrived within %v: buffered, not streamed", want, every, span)
		}
	}
}

// StartStreams sends n requests at once with do, each answered by a stream
// of events (the echo's Echo-Events), and returns where their outcomes
// arrive: "" for a response with all events, else what went wrong; and a
// channel closed once every request has its response head (or failed), so
// that the stream is under way. Reload tests wait for it, reload, and read
// n outcomes.
func StartStreams(n, events int, do func() (*http.Response, error)) (results <-chan string, started <-chan struct{}) {
	out := make(chan string, n)
	heads := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(n)
	go func() {
		wg.Wait()
		close(heads)
	}()
	for i := 0; i < n; i++ {
		go func() {
			resp, err := do()
			wg.Done()
			if err != nil {
				out <- err.Error()
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if got := strings.Count(string(b), "\n\n"); got != events || err != nil {
				out <- fmt.Sprintf("status %d, %d of %d events, %v", resp.StatusCode, got, events, err)
				return
			}
			out <- ""
		}()
	}
	return out, heads
}

// Load is constant request load for restart tests: workers that each send up
// to n requests until Stop, recording the slowest request and the time of the
// last success. A failed request is followed by a 20 ms pause.
type Load struct {
	mu     sync.Mutex
	worst  time.Duration
	lastOK time.Time
	stop   chan struct{}
	wg     sync.WaitGroup
}

// StartLoad starts workers that call do; a request succeeds with status 200.
func StartLoad(workers, n int, do func() (*http.Response, error)) *Load {
	l := &Load{stop: make(chan struct{})}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for range n {
				select {
				case <-l.stop:
					return
				default:
				}
				start := time.Now()
				resp, err := do()
				ok := err == nil && resp.StatusCode == http.StatusOK
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				l.mu.Lock()
				l.worst = max(l.worst, time.Since(start))
				if ok {
					l.lastOK = time.Now()
				}
				l.mu.Unlock()
				if !ok {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	return l
}

// WaitOKAfter waits up to within for a request that succeeded after t, and
// reports how long after t it finished; false when none did in time.
func (l *Load) WaitOKAfter(t time.Time, within time.Duration) (time.Duration, bool) {
	for {
		l.mu.Lock()
		last := l.lastOK
		l.mu.Unlock()
		if last.After(t) {
			return last.Sub(t), true
		}
		if time.Since(t) > within {
			return 0, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop ends the load, waits for the workers and returns the slowest request.
func (l *Load) Stop() time.Duration {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.worst
}
