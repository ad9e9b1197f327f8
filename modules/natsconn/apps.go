package natsconn

import (
	"fmt"
	"sort"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/caddyserver/caddy/v2"

	"github.com/projectneo/caddy-neo/modules/secrets"
)

// checkSecrets loads the config's neo_secrets app, if any, before a
// connection uses its credentials: a missing secret is then reported naming
// its variable, not as the server's authorization failure.
func checkSecrets(ctx caddy.Context) error {
	return secrets.CheckFirst(ctx)
}

// Ready reports whether every connection of the app is connected (the
// readiness check of /neo/ready).
func (a *App) Ready() error {
	names := make([]string, 0, len(a.conns))
	for name := range a.conns {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if st := a.conns[name].nc.Status(); st != nats.CONNECTED {
			return fmt.Errorf("connection %s: %s", name, strings.ToLower(st.String()))
		}
	}
	return nil
}
