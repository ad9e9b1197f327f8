package neo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// Health endpoints on the admin address (admin.api.neo):
//
//	GET /neo/live   200 while the process serves its admin API
//	GET /neo/ready  200 when the process can serve: a config is loaded, the
//	                tenant registry is loaded (and, with a shared store, has
//	                caught up with it), and every NATS connection of the
//	                config is connected; 503 otherwise, naming what is not.
//
// Both answer JSON: {"live":true} and {"ready":bool,"checks":{...}}, each
// check "ok", "not used" or why it is not ready. `caddy neo-health` asks
// them (the image's HEALTHCHECK).

// Readier is implemented by apps with a readiness of their own (the neo_nats
// app: its connections). Ready returns nil when ready.
type Readier interface {
	Ready() error
}

// readyApps are the apps whose Ready is checked, by the check's name.
var readyApps = [][2]string{{"nats", "neo_nats"}, {"nats_gateway", "neo_nats_gateway"}}

func serveHealth(w http.ResponseWriter, r *http.Request, which string) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return apiErr(http.StatusMethodNotAllowed, errors.New("method not allowed"))
	}
	if which == "live" {
		return writeJSON(w, http.StatusOK, map[string]bool{"live": true})
	}
	checks, ready := readiness(caddy.ActiveContext())
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	return writeJSON(w, status, map[string]any{"ready": ready, "checks": checks})
}

// readiness runs the checks against the running config.
func readiness(ctx caddy.Context) (map[string]string, bool) {
	checks := map[string]string{}
	ready := true
	fail := func(name, why string) {
		checks[name] = why
		ready = false
	}
	if ctx.Context == nil || ctx.Err() != nil {
		fail("config", "no config loaded")
		return checks, false
	}
	checks["config"] = "ok"
	switch a, err := ctx.AppIfConfigured("neo"); {
	case errors.Is(err, caddy.ErrNotConfigured):
		checks["registry"] = "not used"
	case err != nil:
		fail("registry", err.Error())
	default:
		app := a.(*App)
		switch {
		case Current() != app:
			fail("registry", "not started")
		case app.ws != nil && !app.ws.ready.Load():
			fail("registry", "the shared tenant store has not been read yet")
		default:
			checks["registry"] = "ok"
		}
	}
	for _, ra := range readyApps {
		a, err := ctx.AppIfConfigured(ra[1])
		switch {
		case errors.Is(err, caddy.ErrNotConfigured):
			checks[ra[0]] = "not used"
		case err != nil:
			fail(ra[0], err.Error())
		default:
			if rd, ok := a.(Readier); ok {
				if err := rd.Ready(); err != nil {
					fail(ra[0], err.Error())
					continue
				}
			}
			checks[ra[0]] = "ok"
		}
	}
	return checks, ready
}

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "neo-health",
		Usage: "[--address <admin address>] [--live]",
		Short: "Asks a running caddy-neo whether it is ready (or live)",
		Long: `
Asks the admin API of a running caddy-neo process for /neo/ready (or, with
--live, /neo/live) and exits 0 when it answers 200, 1 otherwise, printing the
answer. The address defaults to $NEO_ADMIN, else localhost:2019. The image's
HEALTHCHECK runs it.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("address", "", "admin address (default $NEO_ADMIN, else localhost:2019)")
			cmd.Flags().Bool("live", false, "ask /neo/live instead of /neo/ready")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdHealth)
		},
	})
}

func cmdHealth(fl caddycmd.Flags) (int, error) {
	addr := fl.String("address")
	if addr == "" {
		addr = os.Getenv("NEO_ADMIN")
	}
	if addr == "" {
		addr = "localhost:2019"
	}
	path := "/neo/ready"
	if fl.Bool("live") {
		path = "/neo/live"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "http://" + strings.TrimPrefix(addr, "http://") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil) //nolint:gosec // G704: the operator's own admin address (--address or NEO_ADMIN)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	resp, err := http.DefaultClient.Do(req) //nolint:gosec // G704: as above
	if err != nil {
		return 1, fmt.Errorf("%s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Println(strings.TrimSpace(string(body)))
	if resp.StatusCode != http.StatusOK {
		return 1, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return 0, nil
}
