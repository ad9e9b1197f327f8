// Package echo provides neo_echo, a diagnostic HTTP handler that stands in for
// app container replicas and platform service replicas.
//
// It answers every request with a JSON document naming its configured identity
// (tenant, stage, app or service, zone, replica id) and describing what it
// received: method, host, path, raw query, every Neo-* request header, and the
// length and SHA-256 of the request body. The body is streamed through the hash,
// so requests of any size are handled in constant memory.
//
// Operators use it to see what a route delivers to an upstream: which tenant,
// stage and app the edge resolved, which trusted Neo-* headers it set, and
// whether the body arrived intact.
package echo

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/coder/websocket"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Echo{})
}

// Echo is the neo_echo handler. It is terminal: it never calls the next handler.
//
// Request-time behaviour that operators and tests can ask for, all optional and
// bounded:
//   - `Echo-Status: <code>` answers with that status (100 < code < 600);
//     204 and 304 answer without a body.
//   - `Echo-Body-Bytes: <n>` answers with n filler bytes instead of the JSON
//     document (n at most MaxResponseBytes); the JSON document's SHA-256 is then
//     sent in the `Neo-Echo-Request-Sha256` response header.
//   - `Echo-Events: <n>` answers as a server-sent event stream of n events
//     (at most 100), one every `Echo-Interval` (default 200ms, at most 10s),
//     each flushed as it is produced.
type Echo struct {
	// Tenant this replica serves. Default: empty.
	Tenant string `json:"tenant,omitempty"`
	// Stage this replica runs in. Default: empty.
	Stage string `json:"stage,omitempty"`
	// App this replica runs. Default: empty.
	App string `json:"app,omitempty"`
	// Platform service this replica runs (instead of an app). Default: empty.
	Service string `json:"service,omitempty"`
	// Availability zone of this replica. Default: empty.
	Zone string `json:"zone,omitempty"`
	// Replica identifier. Default: empty.
	Replica string `json:"replica,omitempty"`
	// MaxResponseBytes bounds Echo-Body-Bytes. Default: 1 GiB.
	MaxResponseBytes int64 `json:"max_response_bytes,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Echo) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.neo_echo",
		New: func() caddy.Module { return new(Echo) },
	}
}

// Provision fills defaults.
func (e *Echo) Provision(caddy.Context) error {
	if e.MaxResponseBytes == 0 {
		e.MaxResponseBytes = 1 << 30
	}
	return nil
}

// Validate checks the configuration.
func (e *Echo) Validate() error {
	if e.MaxResponseBytes < 0 {
		return fmt.Errorf("max_response_bytes: must not be negative, got %d", e.MaxResponseBytes)
	}
	if e.App != "" && e.Service != "" {
		return fmt.Errorf("app and service: a replica runs an app or a service, not both (app %q, service %q)", e.App, e.Service)
	}
	return nil
}

// Report is the JSON document the handler answers with.
type Report struct {
	Tenant     string              `json:"tenant,omitempty"`
	Stage      string              `json:"stage,omitempty"`
	App        string              `json:"app,omitempty"`
	Service    string              `json:"service,omitempty"`
	Zone       string              `json:"zone,omitempty"`
	Replica    string              `json:"replica,omitempty"`
	Method     string              `json:"method"`
	Host       string              `json:"host"`
	Path       string              `json:"path"`
	RawQuery   string              `json:"raw_query"`
	Proto      string              `json:"proto"`
	NeoHeaders map[string][]string `json:"neo_headers"`
	BodyLength int64               `json:"body_length"`
	BodySHA256 string              `json:"body_sha256"`
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// ServeHTTP answers with the report.
func (e Echo) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return e.serveWebSocket(w, r)
	}
	h := sha256.New()
	// a pooled buffer: io.Copy would allocate 32 KiB for every request
	buf := copyBufs.Get().(*[]byte)
	n, err := io.CopyBuffer(h, r.Body, *buf)
	copyBufs.Put(buf)
	if err != nil {
		return caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("reading request body: %w", err))
	}
	rep := Report{
		Tenant: e.Tenant, Stage: e.Stage, App: e.App, Service: e.Service, Zone: e.Zone, Replica: e.Replica,
		Method: r.Method, Host: r.Host, Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery, Proto: r.Proto,
		NeoHeaders: NeoHeaders(r.Header),
		BodyLength: n, BodySHA256: hex.EncodeToString(h.Sum(nil)),
	}
	status := http.StatusOK
	if s := r.Header.Get("Echo-Status"); s != "" {
		code, err := strconv.Atoi(s)
		if err != nil || code < 200 || code > 599 {
			return caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("Echo-Status: want a status from 200 to 599, got %q", s))
		}
		status = code
	}
	w.Header().Set("Neo-Echo-Replica", e.Replica)
	if status == http.StatusNoContent || status == http.StatusNotModified {
		w.WriteHeader(status)
		return nil
	}
	if s := r.Header.Get("Echo-Events"); s != "" {
		return e.serveEvents(w, r, rep, s)
	}
	if s := r.Header.Get("Echo-Body-Bytes"); s != "" {
		size, err := strconv.ParseInt(s, 10, 64)
		if err != nil || size < 0 || size > e.MaxResponseBytes {
			return caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("Echo-Body-Bytes: want 0 to %d, got %q", e.MaxResponseBytes, s))
		}
		w.Header().Set("Neo-Echo-Request-Sha256", rep.BodySHA256)
		w.Header().Set("Neo-Echo-Request-Length", strconv.FormatInt(n, 10))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(status)
		_, err = io.CopyN(w, &Filler{}, size)
		return err
	}
	body, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, err = w.Write(body)
	return err
}

func (e Echo) serveEvents(w http.ResponseWriter, r *http.Request, rep Report, count string) error {
	n, err := strconv.Atoi(count)
	if err != nil || n < 1 || n > 100 {
		return caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("Echo-Events: want 1 to 100, got %q", count))
	}
	interval := 200 * time.Millisecond
	if s := r.Header.Get("Echo-Interval"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > 10*time.Second {
			return caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("Echo-Interval: want a duration up to 10s, got %q", s))
		}
		interval = d
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	t := time.NewTicker(interval)
	defer t.Stop()
	for i := 0; i < n; i++ {
		if i > 0 {
			select {
			case <-r.Context().Done():
				return nil
			case <-t.C:
			}
		}
		if _, err := fmt.Fprintf(w, "id: %d\ndata: {\"replica\":%q,\"seq\":%d}\n\n", i, rep.Replica, i); err != nil {
			return err
		}
		if err := rc.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// NeoHeaders returns a copy of every Neo-* header in h, with canonical keys.
func NeoHeaders(h http.Header) map[string][]string {
	out := make(map[string][]string)
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if len(k) >= 4 && strings.EqualFold(k[:4], "neo-") && !strings.HasPrefix(http.CanonicalHeaderKey(k), "Neo-Echo-") {
			out[http.CanonicalHeaderKey(k)] = append([]string(nil), h[k]...)
		}
	}
	return out
}

// Filler is an endless reader of a repeating printable pattern; the bytes it
// yields do not depend on the sizes of the reads.
type Filler struct{ off int }

const fillPattern = "caddy-neo echo filler 0123456789abcdefghijklmnopqrstuvwxyz\n"

func (f *Filler) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = fillPattern[f.off]
		f.off++
		if f.off == len(fillPattern) {
			f.off = 0
		}
	}
	return len(p), nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Echo)(nil)
	_ caddy.Validator             = (*Echo)(nil)
	_ caddyhttp.MiddlewareHandler = (*Echo)(nil)
)

// wsReadLimit bounds one WebSocket message the echo accepts (16 MiB).
const wsReadLimit = 16 << 20

// serveWebSocket answers a WebSocket handshake (the 101 carries
// Neo-Echo-Replica) and sends every message back as it came, text or
// binary, until the client closes.
func (e Echo) serveWebSocket(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Neo-Echo-Replica", e.Replica)
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return nil // Accept answered the bad handshake
	}
	defer func() { _ = c.CloseNow() }() // after Close, a second close is a no-op
	c.SetReadLimit(wsReadLimit)
	ctx := r.Context()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return nil
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return nil
		}
	}
}
