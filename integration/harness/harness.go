// Package harness builds the caddy-neo binary and runs it for end-to-end tests
// and benchmarks: start with a Caddyfile or JSON config, wait on the admin API,
// HTTPS clients that dial loopback with the right SNI and trust Caddy's
// internal root, and a clean stop with the logs attached to failures.
package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RepoRoot returns the repository root (the directory holding go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary returns the path of the caddy binary built from this repository.
// NEO_CADDY_BIN names a prebuilt binary to use instead (.ci/run builds one);
// otherwise the binary is built once per process into a temporary directory.
func Binary() (string, error) {
	buildOnce.Do(func() {
		if p := os.Getenv("NEO_CADDY_BIN"); p != "" {
			buildPath, buildErr = filepath.Abs(p)
			if buildErr == nil {
				_, buildErr = os.Stat(buildPath)
			}
			return
		}
		dir, err := os.MkdirTemp("", "caddy-neo-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "caddy")
		cmd := exec.Command("go", "build", "-o", buildPath, "./cmd/caddy")
		cmd.Dir = RepoRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, out)
		}
	})
	return buildPath, buildErr
}

// Options describe one caddy process.
type Options struct {
	// Config is the path of a config file, or the config itself when it does
	// not name an existing file.
	Config string
	// Adapter is "caddyfile" (default for files not ending in .json) or "json".
	Adapter string
	// Admin is the admin API address the config uses. Default localhost:2019.
	Admin string
	// Env adds environment variables (KEY=value).
	Env []string
	// Unset removes variables of this process's environment from the
	// process's (as a shell without them would start it).
	Unset []string
	// WaitFor lists TCP addresses that must accept connections before Start returns.
	WaitFor []string
	// Home is the directory used as HOME and XDG data/config home (Caddy's
	// storage, including the internal CA). Default: a new temporary directory.
	// Reuse it across restarts to keep certificates and stores.
	Home string
	// Dir is the working directory. Default: the repository root.
	Dir string
	// Args are more arguments of `caddy run` (for example --envfile).
	Args []string
	// Command, when set, makes the command that runs caddy from the binary
	// and its arguments (for example inside a namespace as another user);
	// its environment is then Env alone. Default: the binary itself, with
	// this process's environment, HOME and the XDG directories, and Env.
	Command func(bin string, args []string) *exec.Cmd
	// Binary is the caddy binary to run. Default: Binary() (this
	// repository's, or NEO_CADDY_BIN).
	Binary string
}

// Instance is a running caddy process.
type Instance struct {
	Opts Options
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Start runs caddy and waits until its admin API answers and every WaitFor
// address accepts connections. The process is stopped when the test ends; its
// logs are printed if the test failed.
func Start(t testing.TB, o Options) *Instance {
	t.Helper()
	inst, err := StartProcess(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var stacks string
		if t.Failed() && !inst.Exited() {
			stacks = inst.neoGoroutines()
		}
		inst.Stop()
		if t.Failed() {
			// the summary first: CI shows the start and the end of long output
			if s := NotableLogLines(inst.Logs(), 40); s != "" {
				t.Logf("caddy warnings and errors (%s):\n%s", inst.Opts.Config, s)
			}
			if stacks != "" {
				t.Logf("caddy goroutines in caddy-neo code when the test failed:\n%s", stacks)
			}
			t.Logf("caddy logs:\n%s", inst.Logs())
		}
	})
	return inst
}

// NotableLogLines returns up to max log lines at level warn or above, leaving
// out the start-up notices every plain-HTTP listener prints.
func NotableLogLines(logs string, max int) string {
	var out []string
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, `"level":"warn"`) && !strings.Contains(line, `"level":"error"`) &&
			!strings.Contains(line, `"level":"panic"`) && !strings.Contains(line, `"level":"fatal"`) &&
			!strings.HasPrefix(line, "panic:") && !strings.HasPrefix(line, "goroutine ") {
			continue
		}
		if strings.Contains(line, "skipped because it requires TLS") || strings.Contains(line, "listening only on the HTTP port") ||
			strings.Contains(line, "key not found in collection") { // CRS macro expansion, on every request
			continue
		}
		if len(line) > 1500 {
			line = line[:1500] + "…"
		}
		out = append(out, line)
		if len(out) == max {
			out = append(out, "(more left out)")
			break
		}
	}
	return strings.Join(out, "\n")
}

// neoGoroutines returns, from the admin API's pprof endpoint, the goroutine
// stacks (grouped, with counts) that run caddy-neo code: where a hung
// request waits.
func (i *Instance) neoGoroutines() string {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(i.AdminURL("/debug/pprof/goroutine?debug=1"))
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	var out []string
	size := 0
	for _, group := range strings.Split(string(body), "\n\n") {
		if !strings.Contains(group, "caddy-neo/modules") || size > 20000 {
			continue
		}
		out = append(out, group)
		size += len(group)
	}
	return strings.Join(out, "\n\n")
}

// StartProcess is Start without a testing.TB; the caller must call Stop.
func StartProcess(o Options) (*Instance, error) {
	bin := o.Binary
	var err error
	if bin == "" {
		if bin, err = Binary(); err != nil {
			return nil, err
		}
	}
	if o.Admin == "" {
		o.Admin = "localhost:2019"
	}
	if o.Dir == "" {
		o.Dir = RepoRoot()
	}
	if o.Home == "" {
		if o.Home, err = os.MkdirTemp("", "caddy-neo-home-"); err != nil {
			return nil, err
		}
	}
	// A process left over from an earlier run (or another test run on the
	// machine) would answer in our place.
	for _, addr := range append([]string{o.Admin}, o.WaitFor...) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("address %s is already in use (a caddy left running by an earlier test, or another test run?)", addr)
		}
	}
	cfg := o.Config
	path := cfg
	if !filepath.IsAbs(path) {
		path = filepath.Join(o.Dir, cfg)
	}
	if _, err := os.Stat(path); err != nil {
		ext := ".Caddyfile"
		if o.Adapter == "json" {
			ext = ".json"
		}
		f, err := os.CreateTemp(o.Home, "config-*"+ext)
		if err != nil {
			return nil, err
		}
		if _, err := f.WriteString(cfg); err != nil {
			return nil, err
		}
		f.Close()
		path = f.Name()
	}
	adapter := o.Adapter
	if adapter == "" && !strings.HasSuffix(path, ".json") {
		adapter = "caddyfile"
	}
	args := []string{"run", "--config", path}
	if adapter != "" && adapter != "json" {
		args = append(args, "--adapter", adapter)
	}
	args = append(args, o.Args...)
	var cmd *exec.Cmd
	if o.Command != nil {
		cmd = o.Command(bin, args)
		cmd.Env = o.Env
	} else {
		cmd = exec.Command(bin, args...)
		cmd.Dir = o.Dir
		for _, kv := range os.Environ() {
			if k, _, _ := strings.Cut(kv, "="); !slices.Contains(o.Unset, k) {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env,
			"HOME="+o.Home,
			"XDG_DATA_HOME="+filepath.Join(o.Home, "data"),
			"XDG_CONFIG_HOME="+filepath.Join(o.Home, "config"),
		)
		cmd.Env = append(cmd.Env, o.Env...)
	}
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	inst := &Instance{Opts: o, cmd: cmd, logs: logs, done: make(chan struct{})}
	go func() { inst.err = cmd.Wait(); close(inst.done) }()
	if err := inst.waitReady(30 * time.Second); err != nil {
		inst.Stop()
		return nil, fmt.Errorf("%w\ncaddy logs:\n%s", err, inst.Logs())
	}
	return inst, nil
}

func (i *Instance) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-i.done:
			return fmt.Errorf("caddy exited before it was ready: %v", i.err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("caddy not ready after %s", timeout)
		}
		resp, err := client.Get("http://" + i.Opts.Admin + "/config/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 && allListening(i.Opts.WaitFor) {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func allListening(addrs []string) bool {
	for _, a := range addrs {
		c, err := net.DialTimeout("tcp", a, 200*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
	}
	return true
}

// Logs returns what the process wrote so far.
func (i *Instance) Logs() string { return i.logs.String() }

// Exited reports whether the process has ended.
func (i *Instance) Exited() bool {
	select {
	case <-i.done:
		return true
	default:
		return false
	}
}

// Stop ends the process gracefully (SIGTERM), killing it after 10 seconds.
// It is safe to call more than once.
func (i *Instance) Stop() {
	if i.Exited() {
		return
	}
	_ = i.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-i.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-i.cmd.Process.Pid, syscall.SIGKILL)
		<-i.done
	}
}

// Kill ends the process at once (SIGKILL), as a crash would.
func (i *Instance) Kill() {
	if i.Exited() {
		return
	}
	_ = syscall.Kill(-i.cmd.Process.Pid, syscall.SIGKILL)
	<-i.done
}

// Pid returns the caddy process's id (for CPU accounting in benchmarks).
func (i *Instance) Pid() int { return i.cmd.Process.Pid }

// AdminURL returns the admin API URL for path.
func (i *Instance) AdminURL(path string) string { return "http://" + i.Opts.Admin + path }

// Admin sends a request to the admin API and returns the status and body.
func (i *Instance) Admin(method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, i.AdminURL(path), rd)
	if err != nil {
		return 0, nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// RootPool returns a pool holding the root certificate of Caddy's internal CA
// named ca (usually "local"), read through the admin API.
func (i *Instance) RootPool(ca string) (*x509.CertPool, error) {
	status, body, err := i.Admin("GET", "/pki/ca/"+ca, nil)
	if err != nil {
		return nil, err
	}
	if status != 200 {
		return nil, fmt.Errorf("GET /pki/ca/%s: %d %s", ca, status, body)
	}
	var info struct {
		Root string `json:"root_certificate"`
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(info.Root)) {
		return nil, errors.New("no root certificate in the admin API's answer")
	}
	return pool, nil
}

// Client returns an HTTP client that sends every request to dialAddr (for
// example 127.0.0.1:8443) whatever the URL's host, so names like
// acme-dev.apps.localhost need no DNS; TLS uses the URL's host as SNI and
// trusts roots. Redirects are not followed. HTTP/2 is attempted.
func Client(dialAddr string, roots *x509.CertPool) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, dialAddr)
		},
		TLSClientConfig:     &tls.Config{RootCAs: roots},
		TLSHandshakeTimeout: 15 * time.Second, // tells a stuck handshake from a stuck response
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ports, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// Ports are drawn at random from below the kernel's ephemeral range (32768
// and up on Linux), so that no outgoing connection, of this process or of
// another test package running beside it, can take one between the check
// and the server's bind (a port from "127.0.0.1:0" is an ephemeral port and
// could), and this process never hands out a port twice. The range also
// stays clear of the local topology's fixed ports.
const portLow, portHigh = 20000, 32000

var (
	portMu   sync.Mutex
	portUsed = map[int]bool{}
	portRand = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
	// one of six blocks of 2,000 ports, chosen per process
	portBlock = portLow + portRand.IntN((portHigh-portLow)/portBlockSize)*portBlockSize
)

const portBlockSize = 2000

// FreePorts returns n distinct free ports.
func FreePorts(n int) ([]int, error) {
	portMu.Lock()
	defer portMu.Unlock()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 10000 {
			return nil, errors.New("no free port found")
		}
		// this process's own block first: two test processes running at
		// once on the machine (two checkouts, or a run beside CI) then draw
		// from different blocks unless they drew the same one
		p := portBlock + portRand.IntN(portBlockSize)
		if tries >= 1000 {
			p = portLow + portRand.IntN(portHigh-portLow)
		}
		if portUsed[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ls = append(ls, l)
		portUsed[p] = true
		ports = append(ports, p)
	}
	return ports, nil
}

// WaitServing polls url with c until a request completes without a transport
// error (for example until an on-demand or freshly issued certificate is in
// place), or the timeout passes.
func WaitServing(c *http.Client, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not served after %s: %w", url, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
