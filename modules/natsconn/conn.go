package natsconn

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// Connection configures one named NATS connection.
type Connection struct {
	// Server URLs (nats://, tls://). Default: the embedded server when there
	// is one, else nats://127.0.0.1:4222.
	Servers []string `json:"servers,omitempty"`
	// CredsFile is a NATS credentials file (JWT and nkey seed). Default: none.
	CredsFile string `json:"creds_file,omitempty"`
	// NkeySeedFile is a file holding an nkey user seed. Default: none.
	NkeySeedFile string `json:"nkey_seed_file,omitempty"`
	// User for user/password authentication. Default: none.
	User string `json:"user,omitempty"`
	// Password for user/password authentication. Default: none.
	Password string `json:"password,omitempty"`
	// Token for token authentication. Default: none.
	Token string `json:"token,omitempty"`
	// LocalUser connects to the embedded server, in-process, as this user of
	// its authorization file, with the password generated for it (see
	// Embedded.Authorization); no password appears in the config. It goes
	// with neither Servers, other credentials nor TLS. A connection without
	// Servers to an embedded server with authorization must set it.
	// Default: none.
	LocalUser string `json:"local_user,omitempty"`
	// TLS client settings. Default: plain TCP unless a server URL is tls://.
	TLS *ClientTLS `json:"tls,omitempty"`
	// InboxPrefix for reply subjects; lets server permissions confine replies.
	// Default: "_INBOX".
	InboxPrefix string `json:"inbox_prefix,omitempty"`
	// Name announced to the server (shown in /connz). Default: "caddy-neo-<connection name>".
	Name string `json:"name,omitempty"`
	// ReconnectWait is the first wait between reconnect attempts; it doubles
	// up to MaxReconnectWait, with jitter. Reconnects never stop. Default: 100ms.
	ReconnectWait caddy.Duration `json:"reconnect_wait,omitempty"`
	// MaxReconnectWait caps the reconnect backoff. Default: 2s.
	MaxReconnectWait caddy.Duration `json:"max_reconnect_wait,omitempty"`
	// ReconnectBufSize is how many bytes published while disconnected are
	// buffered. Default: 8 MiB.
	ReconnectBufSize int `json:"reconnect_buf_size,omitempty"`
}

// ClientTLS is the TLS configuration of a connection.
type ClientTLS struct {
	// CertFile and KeyFile are the client certificate and key (mutual TLS).
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// CAFile holds the CA certificates that verify the server. Default: system roots.
	CAFile string `json:"ca_file,omitempty"`
}

func (c *Connection) fillDefaults(name string) {
	if c.Name == "" {
		c.Name = "caddy-neo-" + name
	}
	if c.ReconnectWait == 0 {
		c.ReconnectWait = caddy.Duration(100 * time.Millisecond)
	}
	if c.MaxReconnectWait == 0 {
		c.MaxReconnectWait = caddy.Duration(2 * time.Second)
	}
	if c.ReconnectBufSize == 0 {
		c.ReconnectBufSize = 8 << 20
	}
}

func (c *Connection) validate() error {
	for _, s := range c.Servers {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return fmt.Errorf("servers: %q: want a URL such as nats://host:4222", s)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("servers: %q: scheme must be nats, tls, ws or wss", s)
		}
	}
	auth := 0
	for _, set := range []bool{c.CredsFile != "", c.NkeySeedFile != "", c.User != "", c.Token != "", c.LocalUser != ""} {
		if set {
			auth++
		}
	}
	if auth > 1 {
		return errors.New("creds_file, nkey_seed_file, user, token and local_user: choose one authentication method")
	}
	if c.LocalUser != "" && len(c.Servers) > 0 {
		return errors.New("local_user: connects to the embedded server in-process; remove servers")
	}
	if c.LocalUser != "" && c.TLS != nil {
		return errors.New("local_user: connects to the embedded server in-process, without TLS; remove tls_client_cert and tls_ca")
	}
	if c.Password != "" && c.User == "" {
		return errors.New("password: set user too")
	}
	if c.InboxPrefix != "" && !ValidSubject(c.InboxPrefix) {
		return fmt.Errorf("inbox_prefix: %q is not a valid literal subject", c.InboxPrefix)
	}
	if c.ReconnectWait < 0 || c.MaxReconnectWait < 0 {
		return errors.New("reconnect_wait, max_reconnect_wait: must not be negative")
	}
	if c.ReconnectBufSize < 0 {
		return errors.New("reconnect_buf_size: must not be negative")
	}
	if c.TLS != nil && (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("tls: cert_file and key_file go together")
	}
	return nil
}

// validateEmbedded checks the connection against the app's embedded server
// (nil: none): it never reaches a server with authorization without
// credentials, and local_user needs such a server.
func (c *Connection) validateEmbedded(e *Embedded) error {
	if c.LocalUser != "" {
		if e == nil {
			return errors.New("local_user: needs the embedded server (embedded { authorization <file> })")
		}
		if e.Authorization == "" {
			return errors.New("local_user: the embedded server has no authorization file (embedded { authorization <file> })")
		}
		return nil
	}
	if e != nil && e.Authorization != "" && len(c.Servers) == 0 && c.CredsFile == "" && c.NkeySeedFile == "" && c.User == "" && c.Token == "" {
		return fmt.Errorf("the embedded server requires credentials: set local_user <user of %s>", e.Authorization)
	}
	return nil
}

// poolKey identifies the connection by everything that configures it, and
// by the password of its local user (a fingerprint: new password, new
// connection).
func (c *Connection) poolKey(name, serverKey, localPassword string) (string, error) {
	fp := ""
	if localPassword != "" {
		sum := sha256.Sum256([]byte(localPassword))
		fp = hex.EncodeToString(sum[:8])
	}
	return jsonKey("conn:"+name+":"+serverKey+":"+fp+":", c)
}

// pooledConn is a live connection held in the usage pool.
type pooledConn struct {
	name string
	nc   *nats.Conn
	log  *zap.Logger
	done atomic.Bool
}

// Destruct closes the connection once the last configuration using it is
// gone and, after ReleaseGrace, its holds (requests still streaming
// through it, see Hold) are released, at most HoldLimit later. It does not
// block the reload.
func (p *pooledConn) Destruct() error {
	p.done.Store(true)
	p.releaseGauge()
	go p.closeWhenReleased(ReleaseGrace, HoldLimit)
	return nil
}

func (p *pooledConn) closeWhenReleased(grace, limit time.Duration) {
	if grace > 0 {
		time.Sleep(grace) // a background goroutine: nothing waits on it
	}
	if left := waitReleased(p.nc, limit); left > 0 {
		p.log.Warn("closing nats connection with requests still in flight", zap.String("connection", p.name),
			zap.Int("holds", left), zap.Duration("waited", limit))
	} else {
		p.log.Info("closing nats connection", zap.String("connection", p.name))
	}
	if err := p.nc.Drain(); err != nil {
		// not connected (reconnecting) or already closed: close outright
		p.nc.Close()
	}
}

// dial opens the connection; it never fails because the server is down (it
// keeps retrying in the background), only because the configuration is bad
// (including credentials the server refuses).
// localPassword is the password of c.LocalUser.
func (c *Connection) dial(name string, srv *pooledServer, localPassword string, parent *zap.Logger) (*pooledConn, error) {
	log := parent.With(zap.String("connection", name))
	p := &pooledConn{name: name, log: log}
	base := time.Duration(c.ReconnectWait)
	maxWait := time.Duration(c.MaxReconnectWait)
	opts := []nats.Option{
		nats.Name(c.Name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(c.ReconnectBufSize),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			d := base
			for i := 1; i < attempts && d < maxWait; i++ {
				d *= 2
			}
			d = min(d, maxWait)
			return d/2 + time.Duration(time.Now().UnixNano()%int64(d/2+1))
		}),
		nats.ConnectHandler(func(nc *nats.Conn) {
			p.setUp(true)
			log.Info("nats connected", zap.String("server", nc.ConnectedUrlRedacted()))
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if p.done.Load() {
				return
			}
			p.setUp(false)
			log.Warn("nats disconnected", zap.Error(err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			p.setUp(true)
			connReconnects.WithLabelValues(name).Inc()
			log.Info("nats reconnected", zap.String("server", nc.ConnectedUrlRedacted()))
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if p.done.Load() {
				log.Info("nats connection closed")
				return
			}
			p.setUp(false)
			log.Error("nats connection closed; it will not reconnect", zap.Error(nc.LastError()))
		}),
		// An authorization error (a password or credentials rotated on the
		// server) is retried like any other: reconnect forever.
		nats.IgnoreAuthErrorAbort(),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Error("nats async error", zap.String("subject", subj), zap.Error(err))
		}),
	}
	// authOpts: what reaching and authenticating to the server takes
	var authOpts []nats.Option
	if c.InboxPrefix != "" {
		authOpts = append(authOpts, nats.CustomInboxPrefix(c.InboxPrefix))
	}
	switch {
	case c.CredsFile != "":
		authOpts = append(authOpts, nats.UserCredentials(c.CredsFile))
	case c.NkeySeedFile != "":
		opt, err := nats.NkeyOptionFromSeed(c.NkeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nkey_seed_file: %w", err)
		}
		authOpts = append(authOpts, opt)
	case c.User != "":
		authOpts = append(authOpts, nats.UserInfo(c.User, c.Password))
	case c.Token != "":
		authOpts = append(authOpts, nats.Token(c.Token))
	case c.LocalUser != "":
		authOpts = append(authOpts, nats.UserInfo(c.LocalUser, localPassword))
	}
	if c.TLS != nil {
		if c.TLS.CertFile != "" {
			authOpts = append(authOpts, nats.ClientCert(c.TLS.CertFile, c.TLS.KeyFile))
		}
		if c.TLS.CAFile != "" {
			if _, err := os.Stat(c.TLS.CAFile); err != nil {
				return nil, fmt.Errorf("tls: ca_file: %w", err)
			}
			authOpts = append(authOpts, nats.RootCAs(c.TLS.CAFile))
		}
	}
	url := strings.Join(c.Servers, ",")
	if url == "" {
		if srv != nil {
			authOpts = append(authOpts, nats.InProcessServer(srv.srv))
		} else {
			url = nats.DefaultURL
		}
	}
	// One plain attempt first: credentials the server refuses are bad
	// configuration, rejected at load; a server that cannot be reached is
	// retried in the background.
	probeOpts := append(slices.Clip(authOpts), nats.Name(c.Name), nats.NoReconnect(), nats.Timeout(time.Second))
	probeErr := error(nil)
	if probe, err := nats.Connect(url, probeOpts...); err == nil {
		probe.Close()
	} else if isAuthError(err) {
		return nil, fmt.Errorf("%s: the server refused the credentials: %w", authField(c), err)
	} else {
		probeErr = err
	}
	p.ownGauge()
	nc, err := nats.Connect(url, append(slices.Clip(authOpts), opts...)...)
	if err != nil {
		p.releaseGauge()
		return nil, err
	}
	if !nc.IsConnected() {
		log.Warn("nats server not reachable yet; retrying in the background", zap.String("servers", url), zap.NamedError("reason", probeErr))
	}
	upOwners.Lock() // releaseGauge of another connection may read it
	p.nc = nc
	upOwners.Unlock()
	return p, nil
}

// isAuthError reports whether a connection failed because the server
// refused the client's credentials.
func isAuthError(err error) bool {
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired) {
		return true
	}
	// the server's own words, as nats.go passes them on at connect
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "authorization violation") || strings.Contains(s, "authentication expired") || strings.Contains(s, "authentication revoked")
}

// authField names the configuration field that holds the credentials used.
func authField(c *Connection) string {
	switch {
	case c.CredsFile != "":
		return "creds_file"
	case c.NkeySeedFile != "":
		return "nkey_seed_file"
	case c.User != "":
		return "user"
	case c.Token != "":
		return "token"
	case c.LocalUser != "":
		return "local_user"
	case c.TLS != nil && c.TLS.CertFile != "":
		return "tls_client_cert"
	}
	return "credentials (none configured)"
}
