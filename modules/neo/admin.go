package neo

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI is the `admin.api.neo` module: the registry's tenants as REST
// resources on Caddy's admin endpoint. Changes apply to the running registry
// at once, atomically, without a config reload; requests in flight finish
// with the snapshot they started with.
//
//	GET    /neo/                                             registry summary (with a shared store:
//	                                                         store_watch {ready, revision})
//	GET    /neo/tenants                                      tenant names and sources
//	GET    /neo/tenants/{t}                                  tenant (TenantConfig JSON)
//	PUT    /neo/tenants/{t}                                  create or replace (201 / 200)
//	DELETE /neo/tenants/{t}
//	GET|PUT|DELETE /neo/tenants/{t}/apps/{a}                 AppConfig
//	GET|PUT|DELETE /neo/tenants/{t}/apps/{a}/stages/{s}/replicas   [Replica]
//	GET|PUT|DELETE /neo/tenants/{t}/domains/{d}              DomainConfig
//	GET    /neo/tenants/{t}/history                          audit trail ([HistoryEntry])
//	GET    /neo/live, /neo/ready                             liveness, readiness (health.go)
//	GET|PUT|DELETE /neo/tenants/{t}/identity[/...]           identity (admin_identity.go); secrets never returned
//
// Changes record who made them (the client address and the optional
// `Neo-Actor` request header) when the store keeps an audit trail; the
// history is served only by such stores (404 otherwise). When the store
// cannot be reached, changes get 503 and nothing changes.
//
// A bad payload gets 400 with a message naming the field and changes
// nothing; an unknown tenant or sub-resource gets 404; changing a tenant of
// the Caddy config gets 409 (it is read-only), and so does a change to a
// part of a tenant (app, replicas, domain) when the tenant changed between
// reading and writing it, on this node or, with a shared store, another one
// (read it again and retry). POST is accepted as PUT.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.neo",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// MaxAdminBody bounds admin request bodies.
const MaxAdminBody = 1 << 20

// Routes returns the admin routes.
func (AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/neo/", Handler: caddy.AdminHandlerFunc(serveAdmin)}}
}

func apiErr(status int, err error) error {
	return caddy.APIError{HTTPStatus: status, Err: err}
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// adminPath splits /neo/... into its segments, rejecting empty, dot and
// encoded segments.
func adminPath(p string) ([]string, bool) {
	rest, ok := strings.CutPrefix(p, "/neo")
	if !ok {
		return nil, false
	}
	rest = strings.Trim(rest, "/")
	if rest == "" {
		return nil, true
	}
	segs := strings.Split(rest, "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return nil, false
		}
	}
	return segs, true
}

func serveAdmin(w http.ResponseWriter, r *http.Request) error {
	if r.URL.Path == "/neo/live" || r.URL.Path == "/neo/ready" {
		return serveHealth(w, r, r.URL.Path[len("/neo/"):])
	}
	a := Current()
	if a == nil {
		return apiErr(http.StatusServiceUnavailable, errors.New("the neo app is not running"))
	}
	start := time.Now()
	segs, ok := adminPath(r.URL.Path)
	if !ok {
		return apiErr(http.StatusNotFound, fmt.Errorf("no such resource: %s", r.URL.Path))
	}
	method := r.Method
	if method == http.MethodPost {
		method = http.MethodPut
	}
	var body []byte
	if method == http.MethodPut {
		var err error
		body, err = io.ReadAll(io.LimitReader(r.Body, MaxAdminBody+1))
		if err != nil {
			return apiErr(http.StatusBadRequest, fmt.Errorf("body: %w", err))
		}
		if len(body) > MaxAdminBody {
			return apiErr(http.StatusRequestEntityTooLarge, fmt.Errorf("body: larger than %d bytes", MaxAdminBody))
		}
	}
	who := Author{Remote: r.RemoteAddr, Actor: r.Header.Get("Neo-Actor")}
	if len(who.Actor) > 256 {
		who.Actor = who.Actor[:256]
	}
	status, v, err := a.handleAdminBy(method, segs, body, who)
	if method != http.MethodGet {
		a.metrics.adminChange(method, status, err, time.Since(start))
	}
	if err != nil {
		if status == 0 {
			status = http.StatusInternalServerError
		}
		return apiErr(status, err)
	}
	if v == nil {
		w.WriteHeader(status)
		return nil
	}
	return writeJSON(w, status, v)
}

func (a *App) handleAdminBy(method string, segs []string, body []byte, who Author) (int, any, error) {
	snap := a.reg.Snapshot()
	if len(segs) == 0 {
		if method != http.MethodGet {
			return http.StatusMethodNotAllowed, nil, errors.New("method not allowed")
		}
		sum := map[string]any{
			"tenants": snap.Len(), "domains": snap.Domains(), "version": snap.Version(),
			"zone": a.Zone, "stages": a.Stages, "runtime_domain": a.RuntimeDomain, "platform_domain": a.PlatformDomain,
		}
		if ws := a.ws; ws != nil {
			// How far this node follows the shared store: nodes that show
			// the same revision have applied the same changes.
			sum["store_watch"] = map[string]any{"ready": ws.ready.Load(), "revision": ws.rev.Load()}
		}
		return http.StatusOK, sum, nil
	}
	if segs[0] != "tenants" {
		return http.StatusNotFound, nil, fmt.Errorf("no such resource: /neo/%s", strings.Join(segs, "/"))
	}
	if len(segs) == 1 {
		if method != http.MethodGet {
			return http.StatusMethodNotAllowed, nil, errors.New("method not allowed")
		}
		type item struct {
			Name   string `json:"name"`
			Source Source `json:"source"`
		}
		list := make([]item, 0, snap.Len())
		snap.RangeTenants(func(t *Tenant) bool {
			list = append(list, item{t.Name, t.Source})
			return true
		})
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
		return http.StatusOK, list, nil
	}
	name := segs[1]
	if !ValidLabel(name) {
		return http.StatusNotFound, nil, fmt.Errorf("tenant %q: %w", name, ErrNotFound)
	}
	t, exists := snap.Tenant(name)
	sub := segs[2:]
	if len(sub) == 1 && sub[0] == "history" {
		if method != http.MethodGet {
			return http.StatusMethodNotAllowed, nil, errors.New("method not allowed")
		}
		h, ok := a.store.(Historian)
		if !ok {
			return http.StatusNotFound, nil, errors.New("the tenant store keeps no history")
		}
		entries, err := h.History(name)
		if err != nil {
			return a.adminResult(http.StatusOK, storeErr(err))
		}
		for i := range entries {
			entries[i].Tenant = entries[i].Tenant.Redacted() // never a secret
		}
		return http.StatusOK, entries, nil
	}
	// The whole tenant.
	if len(sub) == 0 {
		switch method {
		case http.MethodGet:
			if !exists {
				return http.StatusNotFound, nil, fmt.Errorf("tenant %q: %w", name, ErrNotFound)
			}
			return http.StatusOK, t.Config.Redacted(), nil
		case http.MethodDelete:
			return a.adminResult(http.StatusOK, a.DeleteBy(name, who))
		case http.MethodPut:
			tc, err := ParseTenant(body)
			if err != nil {
				return http.StatusBadRequest, nil, err
			}
			var prev *TenantConfig
			if exists {
				prev = t.Config
			}
			if err := prepareIdentity(tc, prev); err != nil {
				return http.StatusBadRequest, nil, err
			}
			created, err := a.PutBy(name, tc, who)
			if created {
				return a.adminResult(http.StatusCreated, err)
			}
			return a.adminResult(http.StatusOK, err)
		}
		return http.StatusMethodNotAllowed, nil, errors.New("method not allowed")
	}
	if !exists {
		return http.StatusNotFound, nil, fmt.Errorf("tenant %q: %w", name, ErrNotFound)
	}
	if t.Source == SourceConfig && method != http.MethodGet {
		return http.StatusConflict, nil, fmt.Errorf("tenant %q: %w", name, ErrReadOnly)
	}
	tc := t.Config.Clone()
	if sub[0] == "identity" {
		status, v, changed, err := a.handleIdentityAdmin(method, name, sub[1:], body, tc)
		if err != nil || !changed {
			return status, v, err
		}
		if err := a.PutIfUnchanged(name, t.Config, tc, who); err != nil {
			s, _, err := a.adminResult(status, err)
			return s, nil, err
		}
		return status, v, nil
	}
	var get any
	status := http.StatusOK
	switch {
	case len(sub) == 2 && sub[0] == "apps":
		an := sub[1]
		cur, ok := tc.Apps[an]
		switch method {
		case http.MethodGet:
			if !ok {
				return http.StatusNotFound, nil, fmt.Errorf("app %q of tenant %q: %w", an, name, ErrNotFound)
			}
			get = cur
		case http.MethodDelete:
			if !ok {
				return http.StatusNotFound, nil, fmt.Errorf("app %q of tenant %q: %w", an, name, ErrNotFound)
			}
			delete(tc.Apps, an)
		case http.MethodPut:
			ac := new(AppConfig)
			if err := strictDecode(body, ac); err != nil {
				return http.StatusBadRequest, nil, err
			}
			if tc.Apps == nil {
				tc.Apps = map[string]*AppConfig{}
			}
			if !ok {
				status = http.StatusCreated
			}
			tc.Apps[an] = ac
		}
	case len(sub) == 5 && sub[0] == "apps" && sub[2] == "stages" && sub[4] == "replicas":
		an, sn := sub[1], sub[3]
		ac, ok := tc.Apps[an]
		if !ok {
			return http.StatusNotFound, nil, fmt.Errorf("app %q of tenant %q: %w", an, name, ErrNotFound)
		}
		if _, known := a.g.stages.index[sn]; !known {
			return http.StatusNotFound, nil, fmt.Errorf("stage %q: %w", sn, ErrNotFound)
		}
		sc, deployed := ac.Stages[sn]
		switch method {
		case http.MethodGet:
			if !deployed {
				return http.StatusNotFound, nil, fmt.Errorf("app %q of tenant %q has no deployment in stage %q: %w", an, name, sn, ErrNotFound)
			}
			get = sc.Replicas
			if sc.Replicas == nil {
				get = []Replica{}
			}
		case http.MethodDelete:
			if !deployed {
				return http.StatusNotFound, nil, fmt.Errorf("app %q of tenant %q has no deployment in stage %q: %w", an, name, sn, ErrNotFound)
			}
			delete(ac.Stages, sn)
		case http.MethodPut:
			var rs []Replica
			if err := strictDecode(body, &rs); err != nil {
				return http.StatusBadRequest, nil, err
			}
			if ac.Stages == nil {
				ac.Stages = map[string]*StageConfig{}
			}
			if !deployed {
				status = http.StatusCreated
			}
			ac.Stages[sn] = &StageConfig{Replicas: rs}
		}
	case len(sub) == 2 && sub[0] == "domains":
		dn := strings.ToLower(sub[1])
		cur, ok := tc.Domains[dn]
		switch method {
		case http.MethodGet:
			if !ok {
				return http.StatusNotFound, nil, fmt.Errorf("domain %q of tenant %q: %w", dn, name, ErrNotFound)
			}
			get = cur
		case http.MethodDelete:
			if !ok {
				return http.StatusNotFound, nil, fmt.Errorf("domain %q of tenant %q: %w", dn, name, ErrNotFound)
			}
			delete(tc.Domains, dn)
		case http.MethodPut:
			dc := new(DomainConfig)
			if err := strictDecode(body, dc); err != nil {
				return http.StatusBadRequest, nil, err
			}
			if tc.Domains == nil {
				tc.Domains = map[string]*DomainConfig{}
			}
			if !ok {
				status = http.StatusCreated
			}
			tc.Domains[dn] = dc
		}
	default:
		return http.StatusNotFound, nil, fmt.Errorf("no such resource: /neo/%s", strings.Join(segs, "/"))
	}
	switch method {
	case http.MethodGet:
		return http.StatusOK, get, nil
	case http.MethodPut, http.MethodDelete:
		// A change to a part rewrites the whole tenant from this copy: only
		// if nobody changed the tenant meanwhile.
		err := a.PutIfUnchanged(name, t.Config, tc, who)
		return a.adminResult(status, err)
	}
	return http.StatusMethodNotAllowed, nil, errors.New("method not allowed")
}

// adminResult maps a change's error to a status.
func (a *App) adminResult(okStatus int, err error) (int, any, error) {
	switch {
	case err == nil:
		return okStatus, nil, nil
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, nil, err
	case errors.Is(err, ErrReadOnly), errors.Is(err, ErrConflict):
		return http.StatusConflict, nil, err
	case errors.Is(err, ErrStoreUnavailable):
		return http.StatusServiceUnavailable, nil, err
	case strings.HasPrefix(err.Error(), "store:"):
		return http.StatusInternalServerError, nil, err
	}
	return http.StatusBadRequest, nil, err
}

// Interface guards
var _ caddy.AdminRouter = (*AdminAPI)(nil)
