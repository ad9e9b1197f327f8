package neonats

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
)

// Embedded runs a nats-server in the Caddy process, for the local topology and
// tests. Production points connections at an external NATS cluster instead.
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
	srv *server.Server
	log *zap.Logger
}

func (p *pooledServer) Destruct() error {
	p.log.Info("stopping embedded nats server")
	p.srv.Shutdown()
	p.srv.WaitForShutdown()
	return nil
}

func (e *Embedded) start(log *zap.Logger) (*pooledServer, error) {
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
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("server not ready within 10s")
	}
	log.Info("embedded nats server started", zap.String("listen", e.Listen), zap.String("name", opts.ServerName))
	return &pooledServer{srv: srv, log: log}, nil
}
