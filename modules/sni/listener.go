// Package sni is the caddy.listeners.neo_sni listener wrapper: the edge
// refuses a TLS connection whose ClientHello names a host the tenant
// registry does not route, before crypto/tls (and Caddy's in-memory
// certificate cache) sees it.
package sni

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/projectneo/caddy-neo/modules/neo"
)

func init() {
	caddy.RegisterModule(ListenerWrapper{})
}

// ListenerWrapper is caddy.listeners.neo_sni. Put it BEFORE the tls
// placeholder in a server's listener_wrappers:
//
//	listener_wrappers {
//	    neo_sni
//	    tls
//	    neo_framing
//	}
//
// On the first read of a connection (crypto/tls's handshake; Accept is not
// held up) it reads the TLS ClientHello from the raw connection, across
// records and TCP reads, at most MaxHello bytes and within Timeout, and takes
// its server name (SNI). A name the registry routes (the check of
// tls.permission.neo: NormalizeHost, then Snapshot().Routes) or one listed
// in Allow passes: the bytes read are replayed to crypto/tls. Any other name
// gets a fatal TLS unrecognized_name alert and the connection is closed, with
// a log line (remote address, server name, reason). This is what keeps a
// removed tenant's or custom domain's certificate, still in Caddy's
// in-memory certificate cache, from being served: caddytls has no public API
// to evict it (proposed upstream: a public caddytls API to evict managed
// certificates, e.g. (*TLS).EvictCertificates; meanwhile the edge refuses
// unrouted SNI before TLS).
//
// A ClientHello without SNI passes: Caddy's default policy applies (with
// on-demand TLS and no default_sni there is no certificate for it and the
// handshake fails in crypto/tls). A first record that is not a TLS handshake
// (plain HTTP on the TLS port) passes too, and crypto/tls answers it. A
// malformed or oversized ClientHello, or one not complete within Timeout,
// closes the connection. Without a neo app in the config (no registry: the
// config's own sites decide) every name passes.
type ListenerWrapper struct {
	// Allow lists the platform's own names served on this listener that are
	// not in the registry: an exact host ("console.example.com") or a
	// wildcard of one label ("*.example.com"). Default: none.
	Allow []string `json:"allow,omitempty"`
	// Timeout bounds the reading of the ClientHello, so that a slow client
	// cannot hold the connection. Default: 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	exact    map[string]struct{}
	suffixes []string
	routes   func(host string) bool // nil: registryRoutes; set by tests
	logger   *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (ListenerWrapper) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.listeners.neo_sni",
		New: func() caddy.Module { return new(ListenerWrapper) },
	}
}

// Provision fills the defaults and compiles Allow.
func (lw *ListenerWrapper) Provision(ctx caddy.Context) error {
	lw.logger = ctx.Logger()
	if lw.Timeout == 0 {
		lw.Timeout = caddy.Duration(10 * time.Second)
	}
	lw.exact = make(map[string]struct{}, len(lw.Allow))
	lw.suffixes = nil
	for _, a := range lw.Allow {
		wild := strings.HasPrefix(a, "*.")
		h, ok := neo.NormalizeHost(strings.TrimPrefix(a, "*."))
		if !ok || strings.Contains(a, ":") {
			return fmt.Errorf("neo_sni: allow: %q is not a host name or *.host", a)
		}
		if wild {
			lw.suffixes = append(lw.suffixes, "."+h)
		} else {
			lw.exact[h] = struct{}{}
		}
	}
	return nil
}

// Validate checks the config.
func (lw *ListenerWrapper) Validate() error {
	if lw.Timeout < 0 {
		return fmt.Errorf("neo_sni: timeout: must not be negative, got %s", time.Duration(lw.Timeout))
	}
	return nil
}

// WrapListener wraps ln.
func (lw *ListenerWrapper) WrapListener(ln net.Listener) net.Listener {
	return &listener{Listener: ln, lw: lw}
}

// allowed reports whether a connection for server name name may go on to TLS,
// and why not.
func (lw *ListenerWrapper) allowed(name string) (bool, string) {
	h, ok := neo.NormalizeHost(name)
	if !ok {
		return false, "server name is not a host name"
	}
	if _, ok := lw.exact[h]; ok {
		return true, ""
	}
	for _, s := range lw.suffixes {
		if strings.HasSuffix(h, s) && !strings.Contains(h[:len(h)-len(s)], ".") {
			return true, ""
		}
	}
	routes := lw.routes
	if routes == nil {
		routes = registryRoutes
	}
	if routes(h) {
		return true, ""
	}
	return false, "not routed by the tenant registry"
}

// registryRoutes is tls.permission.neo's check; without a neo app (a config
// that serves only its own sites) every name passes.
func registryRoutes(host string) bool {
	a := neo.Current()
	return a == nil || a.Registry().Snapshot().Routes(host)
}

type listener struct {
	net.Listener
	lw *ListenerWrapper
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, lw: l.lw}, nil
}

// conn checks the ClientHello on its first Read and replays it.
type conn struct {
	net.Conn
	lw      *ListenerWrapper
	checked bool
	replay  []byte

	mu     sync.Mutex
	readDL time.Time // the read deadline its user asked for
}

// errRefused fails crypto/tls's handshake read for a refused server name.
var errRefused = errors.New("neo_sni: server name refused")

func (c *conn) Read(p []byte) (int, error) {
	if !c.checked {
		c.checked = true
		if err := c.check(); err != nil {
			return 0, err
		}
	}
	if len(c.replay) > 0 {
		n := copy(p, c.replay)
		c.replay = c.replay[n:]
		if len(c.replay) == 0 {
			c.replay = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *conn) check() error {
	c.mu.Lock()
	user := c.readDL
	dl := time.Now().Add(time.Duration(c.lw.Timeout))
	if !user.IsZero() && user.Before(dl) {
		dl = user
	}
	_ = c.Conn.SetReadDeadline(dl)
	c.mu.Unlock()

	raw, name, err := ReadClientHello(c.Conn)

	c.mu.Lock()
	_ = c.Conn.SetReadDeadline(c.readDL)
	c.mu.Unlock()
	c.replay = raw
	switch {
	case errors.Is(err, ErrNotHandshake):
		return nil
	case err != nil:
		c.lw.logger.Debug("ClientHello refused",
			zap.String("remote", c.RemoteAddr().String()),
			zap.String("reason", err.Error()))
		_ = c.Conn.Close()
		return fmt.Errorf("neo_sni: %w", err)
	case name == "":
		return nil
	}
	if ok, why := c.lw.allowed(name); !ok {
		c.lw.logger.Info("TLS server name refused",
			zap.String("remote", c.RemoteAddr().String()),
			zap.String("server_name", name),
			zap.String("reason", why))
		// A fatal unrecognized_name alert, TLS 1.2 record version.
		_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Conn.Write([]byte{21, 3, 3, 0, 2, 2, 112})
		_ = c.Conn.Close()
		return errRefused
	}
	return nil
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readDL = t
	return c.Conn.SetReadDeadline(t)
}

func (c *conn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readDL = t
	return c.Conn.SetDeadline(t)
}

// UnmarshalCaddyfile:
//
//	neo_sni {
//	    allow <host|*.host>...
//	    timeout <duration>
//	}
func (lw *ListenerWrapper) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // module name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "allow":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			lw.Allow = append(lw.Allow, args...)
		case "timeout":
			if !d.NextArg() {
				return d.ArgErr()
			}
			v, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("neo_sni: timeout: %v", err)
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			lw.Timeout = caddy.Duration(v)
		default:
			return d.Errf("neo_sni: unknown option %q", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*ListenerWrapper)(nil)
	_ caddy.Validator       = (*ListenerWrapper)(nil)
	_ caddy.ListenerWrapper = (*ListenerWrapper)(nil)
	_ caddyfile.Unmarshaler = (*ListenerWrapper)(nil)
)
