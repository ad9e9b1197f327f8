// Package natsconn is caddy-neo's NATS connection layer: the `neo_nats` app
// (global option `neo_nats`), which holds named NATS connections shared by
// every module that uses them and kept across config reloads, and an
// optional embedded nats-server with local authorization.
//
// Modules reach a connection with Conn(ctx, name). The package links no
// tenant registry (modules/neo): the certificate storage, the registry's KV
// store, the identity store and the distributed rate limiter import it
// alone. HTTP over NATS (transport and stage gateways) is modules/natshttp.
package natsconn

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/caddyserver/caddy/v2"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(App{})
}

// DefaultConnection is the name of the connection used when a module names none.
const DefaultConnection = "default"

// ErrUnknownConnection is returned when a module asks for a connection the nats
// app does not configure.
var ErrUnknownConnection = errors.New("unknown nats connection")

// pool holds live NATS connections and embedded servers across config reloads.
// Keys are derived from the full configuration of the value, so a reload with
// an unchanged configuration reuses the value and a changed one makes a new one.
var pool = caddy.NewUsagePool()

// App is the `neo_nats` app: named connections and an optional embedded server.
//
// When no connection is configured, a connection named "default" is made: to
// the embedded server when there is one (an anonymous one: an embedded server
// with authorization needs connections with local_user), else to
// nats://127.0.0.1:4222.
type App struct {
	// Connections by name. Default: one connection named "default".
	Connections map[string]*Connection `json:"connections,omitempty"`
	// Embedded runs a nats-server inside this process. Default: none.
	Embedded *Embedded `json:"embedded,omitempty"`

	conns     map[string]*pooledConn
	connKeys  []string
	serverKey string
	server    *pooledServer
	logger    *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "neo_nats",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision starts the embedded server (if any) and opens every connection,
// reusing those left by the previous configuration.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	if err := a.Validate(); err != nil {
		return err
	}
	if err := checkSecrets(ctx); err != nil {
		return err
	}
	if a.Embedded != nil {
		key, err := a.Embedded.poolKey()
		if err != nil {
			return err
		}
		// read at every load: a reload picks up a changed file
		var la *localAuth
		if a.Embedded.Authorization != "" {
			if la, err = loadLocalAuth(a.Embedded.Authorization, LocalCredentialsFile()); err != nil {
				return fmt.Errorf("embedded: authorization: %w", err)
			}
		}
		val, loaded, err := pool.LoadOrNew(key, func() (caddy.Destructor, error) {
			return a.Embedded.start(la, a.logger)
		})
		if err != nil {
			return fmt.Errorf("embedded: %w", err)
		}
		a.serverKey = key
		a.server = val.(*pooledServer)
		if loaded {
			if err := a.server.useAuth(a.Embedded, la); err != nil {
				return fmt.Errorf("embedded: authorization: %w", err)
			}
		}
	}
	if len(a.Connections) == 0 {
		a.Connections = map[string]*Connection{DefaultConnection: {}}
	}
	a.conns = make(map[string]*pooledConn, len(a.Connections))
	names := make([]string, 0, len(a.Connections))
	for name := range a.Connections {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		c := a.Connections[name]
		c.fillDefaults(name)
		// a local user's password, found before the connection is pooled: a
		// new password (credentials file deleted) makes a new connection
		password := ""
		if c.LocalUser != "" {
			var err error
			if password, err = a.server.password(c.LocalUser); err != nil {
				return fmt.Errorf("connections: %s: local_user: %w", name, err)
			}
		}
		key, err := c.poolKey(name, a.serverKey, password)
		if err != nil {
			return err
		}
		val, _, err := pool.LoadOrNew(key, func() (caddy.Destructor, error) {
			return c.dial(name, a.server, password, a.logger)
		})
		if err != nil {
			return fmt.Errorf("connections: %s: %w", name, err)
		}
		a.connKeys = append(a.connKeys, key)
		a.conns[name] = val.(*pooledConn)
	}
	return nil
}

// Validate checks the configuration.
func (a *App) Validate() error {
	for name, c := range a.Connections {
		if !ValidName(name) {
			return fmt.Errorf("connections: name %q: want letters, digits, '-' or '_'", name)
		}
		if c == nil {
			return fmt.Errorf("connections: %s: empty", name)
		}
		if err := c.validate(); err != nil {
			return fmt.Errorf("connections: %s: %w", name, err)
		}
		if err := c.validateEmbedded(a.Embedded); err != nil {
			return fmt.Errorf("connections: %s: %w", name, err)
		}
	}
	if a.Embedded != nil {
		if err := a.Embedded.validate(); err != nil {
			return fmt.Errorf("embedded: %w", err)
		}
		if a.Embedded.Authorization != "" && len(a.Connections) == 0 {
			// the implicit "default" connection would have no credentials
			return errors.New("connections: none configured, and the embedded server requires credentials: " +
				"add a connection with local_user <user of the authorization file>")
		}
	}
	return nil
}

// Start is a no-op: connections are opened in Provision so that other modules
// can use them while they provision.
func (a *App) Start() error { return nil }

// Stop is a no-op: connections outlive the configuration that opened them
// until no configuration uses them (see Cleanup).
func (a *App) Stop() error { return nil }

// Cleanup releases this configuration's hold on the pooled connections and the
// embedded server; the last holder closes them.
func (a *App) Cleanup() error {
	for _, key := range a.connKeys {
		if _, err := pool.Delete(key); err != nil {
			a.logger.Error("releasing nats connection", zap.Error(err))
		}
	}
	a.connKeys = nil
	if a.serverKey != "" {
		if _, err := pool.Delete(a.serverKey); err != nil {
			a.logger.Error("releasing embedded nats server", zap.Error(err))
		}
		a.serverKey = ""
	}
	return nil
}

// Conn returns the live connection with the given name ("" means "default").
func (a *App) Conn(name string) (*nats.Conn, error) {
	if name == "" {
		name = DefaultConnection
	}
	pc, ok := a.conns[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownConnection, name)
	}
	return pc.nc, nil
}

// EmbeddedServerURL returns the client URL of the embedded server, or "".
func (a *App) EmbeddedServerURL() string {
	if a.server == nil {
		return ""
	}
	return a.server.srv.ClientURL()
}

// Conn returns the named connection of the nats app of the configuration
// being provisioned, loading the app if needed.
func Conn(ctx caddy.Context, name string) (*nats.Conn, error) {
	appIface, err := ctx.App("neo_nats")
	if err != nil {
		return nil, fmt.Errorf("loading the neo_nats app: %w", err)
	}
	return appIface.(*App).Conn(name)
}

// ValidName reports whether s is a name of letters, digits, '-' and '_' (a
// connection's, a gateway's or a micro service's: they appear in metric
// labels and service names).
func ValidName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func jsonKey(prefix string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return prefix + string(b), nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
