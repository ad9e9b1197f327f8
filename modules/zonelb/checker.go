package zonelb

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/projectneo/caddy-neo/internal/clock"
)

// CheckConfig configures active health checks of replicas.
type CheckConfig struct {
	// Path requested on each replica. Default: none, active checks off.
	Path string `json:"path,omitempty"`
	// Interval between checks. Default: 5s.
	Interval caddy.Duration `json:"interval,omitempty"`
	// Timeout of one check. Default: 2s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Status a healthy replica answers. Default: any 2xx.
	Status int `json:"status,omitempty"`
	// Fails is how many failed checks in a row mark a replica unhealthy,
	// and Passes how many passed checks mark it healthy again. Default: 1 each.
	Fails  int `json:"fails,omitempty"`
	Passes int `json:"passes,omitempty"`
}

// Validate fills defaults and checks the values.
func (c *CheckConfig) Validate() error {
	if c.Interval == 0 {
		c.Interval = caddy.Duration(5 * time.Second)
	}
	if c.Timeout == 0 {
		c.Timeout = caddy.Duration(2 * time.Second)
	}
	if c.Fails == 0 {
		c.Fails = 1
	}
	if c.Passes == 0 {
		c.Passes = 1
	}
	switch {
	case c.Path != "" && c.Path[0] != '/':
		return fmt.Errorf("health_path: must begin with /, got %q", c.Path)
	case c.Interval < caddy.Duration(10*time.Millisecond):
		return fmt.Errorf("health_interval: at least 10ms, got %s", time.Duration(c.Interval))
	case c.Timeout <= 0 || c.Timeout > c.Interval:
		return fmt.Errorf("health_timeout: must be positive and at most health_interval, got %s", time.Duration(c.Timeout))
	case c.Status != 0 && (c.Status < 100 || c.Status > 599):
		return fmt.Errorf("health_status: want an HTTP status, got %d", c.Status)
	case c.Fails < 1 || c.Passes < 1:
		return fmt.Errorf("health_fails and health_passes: at least 1")
	}
	return nil
}

func (c CheckConfig) key(addr string) string {
	return fmt.Sprintf("%s|%s|%d|%d|%d|%d|%d", addr, c.Path, c.Interval, c.Timeout, c.Status, c.Fails, c.Passes)
}

// checkClock paces the checkers; tests replace it with a clock.Fake.
var checkClock = clock.Real

// checkers are shared by every config that checks the same replica the same
// way, and survive config reloads; the last user's Release stops them.
var checkers = caddy.NewUsagePool()

// Checker checks one replica address until destroyed.
type Checker struct {
	addr    string
	cfg     CheckConfig
	healthy atomic.Bool
	cancel  context.CancelFunc
	done    chan struct{}
	client  *http.Client
	checks  atomic.Uint64
}

// Healthy reports the replica's last known state (healthy until the first
// check says otherwise).
func (c *Checker) Healthy() bool { return c.healthy.Load() }

// Checks returns how many checks ran.
func (c *Checker) Checks() uint64 { return c.checks.Load() }

// Destruct stops the checker (caddy.Destructor).
func (c *Checker) Destruct() error {
	c.cancel()
	<-c.done
	return nil
}

// AcquireChecker returns the shared checker of addr for cfg (validated),
// starting it if needed. Every AcquireChecker must be paired with a
// ReleaseChecker of the same address and cfg.
func AcquireChecker(addr string, cfg CheckConfig) (*Checker, error) {
	v, _, err := checkers.LoadOrNew(cfg.key(addr), func() (caddy.Destructor, error) {
		ctx, cancel := context.WithCancel(context.Background())
		c := &Checker{addr: addr, cfg: cfg, cancel: cancel, done: make(chan struct{}),
			client: &http.Client{
				Timeout: time.Duration(cfg.Timeout),
				Transport: &http.Transport{
					DialContext:       (&net.Dialer{Timeout: time.Duration(cfg.Timeout)}).DialContext,
					DisableKeepAlives: true,
				},
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			}}
		c.healthy.Store(true)
		go c.run(ctx)
		return c, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*Checker), nil
}

// ReleaseChecker releases one use of the checker; the last release stops it.
func ReleaseChecker(addr string, cfg CheckConfig) {
	_, _ = checkers.Delete(cfg.key(addr))
}

func (c *Checker) run(ctx context.Context) {
	defer close(c.done)
	t := checkClock.NewTicker(time.Duration(c.cfg.Interval))
	defer t.Stop()
	fails, passes := 0, 0
	for {
		ok := c.check(ctx)
		c.checks.Add(1)
		if ok {
			passes, fails = passes+1, 0
			if passes >= c.cfg.Passes {
				c.healthy.Store(true)
			}
		} else {
			fails, passes = fails+1, 0
			if fails >= c.cfg.Fails {
				c.healthy.Store(false)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

func (c *Checker) check(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.addr+c.cfg.Path, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", "caddy-neo-health-check")
	resp, err := c.client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if c.cfg.Status != 0 {
		return resp.StatusCode == c.cfg.Status
	}
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}

// CheckerSet holds one config's references to checkers, acquired on first
// use of an address, all released by Close (the config's Cleanup).
type CheckerSet struct {
	cfg    CheckConfig
	mu     sync.Mutex
	byAddr sync.Map // address -> *Checker
	closed bool
}

// NewCheckerSet returns a set checking with cfg (validated). An empty Path
// disables active checks: Healthy always reports true.
func NewCheckerSet(cfg CheckConfig) *CheckerSet { return &CheckerSet{cfg: cfg} }

// Healthy reports whether addr passed its last check, starting a checker on
// the first call for addr. It does not allocate once the checker exists.
func (s *CheckerSet) Healthy(addr string) bool {
	if s == nil || s.cfg.Path == "" {
		return true
	}
	if c, ok := s.byAddr.Load(addr); ok {
		return c.(*Checker).Healthy()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return true
	}
	if c, ok := s.byAddr.Load(addr); ok {
		return c.(*Checker).Healthy()
	}
	c, err := AcquireChecker(addr, s.cfg)
	if err != nil {
		return true
	}
	s.byAddr.Store(addr, c)
	return c.Healthy()
}

// Close releases every checker the set acquired.
func (s *CheckerSet) Close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.byAddr.Range(func(k, _ any) bool {
		ReleaseChecker(k.(string), s.cfg)
		s.byAddr.Delete(k)
		return true
	})
}

// Interface guards
var _ caddy.Destructor = (*Checker)(nil)
