package framing

import (
	"bytes"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/projectneo/caddy-neo/modules/neo"
)

func init() {
	caddy.RegisterModule(ListenerWrapper{})
}

// ListenerWrapper is the caddy.listeners.neo_framing listener wrapper: it
// checks the HTTP/1.1 framing of every request on the connections of the
// server (after TLS: put it after the tls placeholder, which is the default)
// and refuses a request that breaks it with 400 and a log line (remote
// address, Host, tenant, reason), where net/http would accept it (bare LF,
// obsolete line folding, Content-Length together with Transfer-Encoding),
// answer 501 (a Transfer-Encoding other than chunked) or answer 400 without
// a log line (conflicting Content-Length). The rules are the checker's
// (checker.go).
//
// A violation in a request head makes net/http answer 400 and close the
// connection (the wrapper hands it an unparsable line in place of the rest of
// the connection, so that any response still being written for an earlier
// request on it comes first). A violation in a chunked body fails the body's
// reads with a *Violation, which the neo_framing handler turns into 400.
// HTTP/2 (its connection preface) and connections that switched protocols
// (101 to a WebSocket upgrade, 2xx to CONNECT) are not inspected.
type ListenerWrapper struct {
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (ListenerWrapper) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.listeners.neo_framing",
		New: func() caddy.Module { return new(ListenerWrapper) },
	}
}

// Provision sets up the logger.
func (lw *ListenerWrapper) Provision(ctx caddy.Context) error {
	lw.logger = ctx.Logger()
	return nil
}

// WrapListener wraps ln.
func (lw *ListenerWrapper) WrapListener(ln net.Listener) net.Listener {
	return &listener{Listener: ln, lw: lw}
}

type listener struct {
	net.Listener
	lw *ListenerWrapper
}

type connectionStater interface {
	ConnectionState() tls.ConnectionState
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	fc := &conn{Conn: c, lw: l.lw}
	if _, ok := c.(connectionStater); ok {
		// Caddy sets r.TLS from ConnectionState for wrapped TLS connections.
		return &tlsConn{fc}, nil
	}
	return fc, nil
}

// junk is what net/http reads in place of a request head that breaks the
// framing rules: no request line, so it answers 400 and closes.
var junk = []byte("\x00\r\n\r\n")

// conn checks the requests read from the connection.
type conn struct {
	net.Conn
	lw *ListenerWrapper

	mu      sync.Mutex // serialises Read (net/http reads from one goroutine at a time)
	chk     checker
	junk    []byte
	bodyErr error
	closed  bool // junk delivered: EOF from now on

	pass    atomic.Bool // stop checking (HTTP/2, switched protocols)
	upgrade atomic.Int32
}

const (
	upgradeNone = iota
	upgradeAsked
	connectAsked
)

func (c *conn) Read(p []byte) (int, error) {
	if c.pass.Load() {
		return c.Conn.Read(p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.junk != nil:
		n := copy(p, c.junk)
		if c.junk = c.junk[n:]; len(c.junk) == 0 {
			c.junk, c.closed = nil, true
		}
		return n, nil
	case c.closed:
		// net/http has the unparsable line and answers 400 when it reads
		// its next request; until then (a request before it may still be
		// running, and net/http reads ahead to notice a closed connection)
		// the rest of the connection is read and dropped, never EOF,
		// which would cancel that request.
		for {
			n, err := c.Conn.Read(p)
			if err != nil {
				return 0, err
			}
			_ = n
		}
	case c.bodyErr != nil:
		return 0, c.bodyErr
	}
	n, err := c.Conn.Read(p)
	if n == 0 {
		return n, err
	}
	ok, v := c.chk.feed(p[:n])
	if c.chk.st == stPassthrough {
		c.pass.Store(true)
	}
	if u := c.chk.upgradeAsked; u != upgradeNone {
		c.chk.upgradeAsked = upgradeNone
		c.upgrade.Store(u)
	}
	if v == nil {
		return n, err
	}
	c.log(v)
	if v.InBody {
		c.bodyErr = v
		if ok > 0 {
			return ok, nil
		}
		return 0, v
	}
	c.junk = junk
	k := copy(p[ok:], c.junk)
	if c.junk = c.junk[k:]; len(c.junk) == 0 {
		c.junk, c.closed = nil, true
	}
	return ok + k, nil
}

// Write watches the response to a request that may switch protocols: after
// 101 (or 2xx to CONNECT) the connection is no longer HTTP/1.1 and is not
// checked any more.
func (c *conn) Write(p []byte) (int, error) {
	if u := c.upgrade.Load(); u != upgradeNone && bytes.HasPrefix(p, []byte("HTTP/1.")) && len(p) >= 12 {
		status := p[9:12]
		switch {
		case u == upgradeAsked && string(status) == "101", u == connectAsked && status[0] == '2':
			c.pass.Store(true)
			c.upgrade.Store(upgradeNone)
		case status[0] == '1':
			// an interim response (100 Continue, 103): keep watching
		default:
			c.upgrade.Store(upgradeNone)
		}
	}
	return c.Conn.Write(p)
}

// CloseWrite passes a half-close through when the connection has one.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *conn) log(v *Violation) {
	// A violation in a body is logged at warn level, with the status, by
	// the neo_framing handler that answers it.
	lvl := zapcore.WarnLevel
	if v.InBody {
		lvl = zapcore.DebugLevel
	}
	ce := c.lw.logger.Check(lvl, "malformed request framing refused")
	if ce == nil {
		return
	}
	fields := []zap.Field{zap.String("reason", v.Reason), zap.String("remote", c.RemoteAddr().String()), zap.String("host", v.Host), zap.Bool("in_body", v.InBody)}
	if v.Host != "" {
		if a := neo.Current(); a != nil {
			if t, ok := a.Registry().Snapshot().TenantForHost(v.Host); ok {
				fields = append(fields, zap.String("tenant", t.Name))
			}
		}
	}
	ce.Write(fields...)
}

// tlsConn is conn over a TLS connection: Caddy takes the request's TLS state
// from ConnectionState.
type tlsConn struct{ *conn }

func (c *tlsConn) ConnectionState() tls.ConnectionState {
	return c.Conn.(connectionStater).ConnectionState()
}

// Interface guards
var (
	_ caddy.Provisioner     = (*ListenerWrapper)(nil)
	_ caddy.ListenerWrapper = (*ListenerWrapper)(nil)
	_ connectionStater      = (*tlsConn)(nil)
)
