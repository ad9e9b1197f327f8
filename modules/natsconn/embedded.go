package natsconn

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
)

// Embedded runs a nats-server in the Caddy process, for the local topology and
// tests. Production points connections at an external NATS cluster instead.
//
// The server enforces the authorization of a nats-server configuration file
// (Authorization), the production permission file in the local topology, so
// that every client, in-process or over the listener, needs the credentials
// of one of its users; or, only when Anonymous says so, none at all.
type Embedded struct {
	// Listen is the client listener address (host:port). Default: none; the
	// server is reachable in-process only, by connections with no servers.
	Listen string `json:"listen,omitempty"`
	// Monitor is the HTTP monitoring listener (/varz, /connz). Default: none.
	Monitor string `json:"monitor,omitempty"`
	// ServerName names the server. Default: "caddy-neo-embedded".
	ServerName string `json:"server_name,omitempty"`
	// MaxPayload is the server's max_payload in bytes. Default: 1 MiB.
	MaxPayload int32 `json:"max_payload,omitempty"`
	// JetStream enables JetStream. Default: off.
	JetStream bool `json:"jetstream,omitempty"`
	// StoreDir is JetStream's storage directory; required with JetStream.
	StoreDir string `json:"store_dir,omitempty"`
	// Authorization is a nats-server configuration file (for instance
	// caddyfiles/nats/cluster/authorization.conf) whose authorization the
	// server enforces: users, their permissions, accounts, nkeys, parsed by
	// nats-server's own parser; the rest of the file (listen, cluster,
	// jetstream...) is ignored, and so are the passwords: every user gets a
	// password generated at first start and kept in LocalCredentialsFile()
	// (Caddy's data directory, neo/nats-local-credentials.json, mode 0600),
	// which connections of this process use through their LocalUser. The file
	// is read again at every config load; a change is applied without a
	// restart. Default: none; then Anonymous is required.
	Authorization string `json:"authorization,omitempty"`
	// Anonymous lets any client connect without credentials and publish or
	// subscribe to anything: for tests and benchmarks, never where other
	// processes can reach the listener. Default: false (an embedded server
	// needs Authorization or Anonymous).
	Anonymous bool `json:"anonymous,omitempty"`
}

func (e *Embedded) validate() error {
	for field, addr := range map[string]string{"listen": e.Listen, "monitor": e.Monitor} {
		if addr == "" {
			continue
		}
		if _, _, err := splitHostPort(addr); err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
	}
	if e.MaxPayload < 0 {
		return errors.New("max_payload: must not be negative")
	}
	if e.JetStream && e.StoreDir == "" {
		return errors.New("store_dir: required with jetstream")
	}
	switch {
	case e.Authorization != "" && e.Anonymous:
		return errors.New("anonymous: conflicts with authorization (choose one)")
	case e.Authorization == "" && !e.Anonymous:
		return errors.New("authorization: required: a nats-server configuration file whose users and permissions the server enforces " +
			"(e.g. caddyfiles/nats/cluster/authorization.conf); set anonymous instead to let any client in without credentials")
	}
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("want host:port, got %q", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	return host, p, nil
}

func (e *Embedded) poolKey() (string, error) { return jsonKey("embedded:", e) }

type pooledServer struct {
	srv  *server.Server
	log  *zap.Logger
	auth atomic.Pointer[localAuth] // nil: anonymous
}

// password returns the stored password of a user of the authorization file.
func (p *pooledServer) password(user string) (string, error) {
	if p == nil {
		return "", errors.New("needs the embedded server (embedded { authorization <file> })")
	}
	la := p.auth.Load()
	if la == nil {
		return "", errors.New("the embedded server has no authorization file")
	}
	pw, ok := la.passwords[user]
	if !ok {
		return "", fmt.Errorf("%q is not a user with a password in %s (users: %s)", user, la.file, strings.Join(la.userNames(), ", "))
	}
	return pw, nil
}

// useAuth makes a server taken over from the previous configuration enforce
// la (read again for this one): a changed file or password is applied with
// nats-server's reload, which also disconnects clients no longer allowed.
func (p *pooledServer) useAuth(e *Embedded, la *localAuth) error {
	cur := p.auth.Load()
	if la == nil || cur == nil || cur.digest == la.digest {
		return nil
	}
	opts := e.serverOptions()
	la.apply(opts)
	if err := p.srv.ReloadOptions(opts); err != nil {
		return fmt.Errorf("applying the changed %s: %w", la.file, err)
	}
	p.auth.Store(la)
	p.log.Info("embedded nats server authorization reloaded", zap.String("authorization", la.file), zap.Strings("users", la.userNames()))
	return nil
}

func (p *pooledServer) Destruct() error {
	p.log.Info("stopping embedded nats server")
	p.srv.Shutdown()
	p.srv.WaitForShutdown()
	return nil
}

// serverOptions are the server's options without the authorization.
func (e *Embedded) serverOptions() *server.Options {
	opts := &server.Options{
		ServerName: e.ServerName,
		MaxPayload: e.MaxPayload,
		JetStream:  e.JetStream,
		StoreDir:   e.StoreDir,
		NoSigs:     true,
		NoLog:      true,
	}
	if opts.ServerName == "" {
		opts.ServerName = "caddy-neo-embedded"
	}
	if e.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, _ := splitHostPort(e.Listen)
		opts.Host, opts.Port = host, port
	}
	if e.Monitor != "" {
		host, port, _ := splitHostPort(e.Monitor)
		opts.HTTPHost, opts.HTTPPort = host, port
	}
	return opts
}

// start runs the server with la's authorization (nil: anonymous).
func (e *Embedded) start(la *localAuth, log *zap.Logger) (*pooledServer, error) {
	opts := e.serverOptions()
	if la != nil {
		la.apply(opts)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("server not ready within 10s")
	}
	p := &pooledServer{srv: srv, log: log}
	if la != nil {
		p.auth.Store(la)
		log.Info("embedded nats server started", zap.String("listen", e.Listen), zap.String("name", opts.ServerName),
			zap.String("authorization", la.file), zap.Strings("users", la.userNames()), zap.String("credentials", LocalCredentialsFile()))
	} else {
		log.Warn("embedded nats server started without authorization: any client may publish and subscribe to anything",
			zap.String("listen", e.Listen), zap.String("name", opts.ServerName))
	}
	return p, nil
}
