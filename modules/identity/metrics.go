package identity

import (
	"github.com/projectneo/caddy-neo/internal/neometrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics, without a tenant label (bounded whatever the fleet): the log
// lines carry the tenant and the reason.
var (
	mSignIns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "caddy_neo_identity_signins_total",
		Help: "Sign-ins by method (password, oidc) and result (ok, refused).",
	}, []string{"method", "result"})
	mTokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "caddy_neo_identity_tokens_total",
		Help: "Token endpoint requests by grant (client_credentials, refresh_token, other) and result (ok, refused).",
	}, []string{"grant", "result"})
	mRenewals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "caddy_neo_identity_renewals_total",
		Help: "Refresh-token renewals by result: ok, grace (a parallel request within the reuse grace), reuse (the chain was revoked), refused.",
	}, []string{"result"})
	mRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "caddy_neo_identity_refused_total",
		Help: "Requests neo_identity refused, by status (401, 403, 503) or sent to sign in (302).",
	}, []string{"status"})
)

func registerMetrics(reg prometheus.Registerer) error {
	return neometrics.Register(reg, mSignIns, mTokens, mRenewals, mRefused)
}
