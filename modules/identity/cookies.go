package identity

import (
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/projectneo/caddy-neo/modules/neo"
)

// Cookies of the identity service. The __Host- prefix makes browsers keep
// them host-only (no Domain), Secure and for the whole host (Path=/): a
// stage's session covers every app of that stage host and nothing else.
const (
	cookieAccess  = "__Host-neo_at"   // the access token (a JWT)
	cookieRefresh = "__Host-neo_rt"   // the session's current refresh token
	cookieCSRF    = "__Host-neo_csrf" // the sign-in form's anti-forgery nonce
	cookieOIDC    = "__Host-neo_oidc" // a sign-in in progress at an external provider
)

// reqCookies are the identity cookies of a request, taken out of its Cookie
// header by neo_signin so that no upstream ever sees them.
type reqCookies struct {
	access, refresh, csrf, oidc string
}

const cookiesVar = "neo_identity_cookies"

// takeCookies removes the identity cookies from the request's Cookie
// headers and remembers them for the handlers after neo_signin.
func takeCookies(r *http.Request) *reqCookies {
	ck := new(reqCookies)
	neo.TakeIdentityCookies(r.Header, func(name, val string) {
		switch name {
		case cookieAccess:
			ck.access = val
		case cookieRefresh:
			ck.refresh = val
		case cookieCSRF:
			ck.csrf = val
		case cookieOIDC:
			ck.oidc = val
		}
	})
	caddyhttp.SetVar(r.Context(), cookiesVar, ck)
	return ck
}

// requestCookies returns the cookies neo_signin took, or takes them now
// (a route without neo_signin).
func requestCookies(r *http.Request) *reqCookies {
	if ck, ok := caddyhttp.GetVar(r.Context(), cookiesVar).(*reqCookies); ok {
		return ck
	}
	return takeCookies(r)
}

func setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration, sameSite http.SameSite) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", Secure: true, HttpOnly: true, SameSite: sameSite} //nolint:gosec // G124: SameSite is the caller's (Lax or Strict)
	if maxAge > 0 {
		c.MaxAge = int(maxAge / time.Second)
	} else {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// setSessionCookies sets the access token and, when it changed, the
// refresh token.
func (a *App) setSessionCookies(w http.ResponseWriter, access, refresh string, s *session) {
	setCookie(w, cookieAccess, access, time.Duration(a.AccessTokenLifetime), http.SameSiteLaxMode)
	if refresh != "" {
		setCookie(w, cookieRefresh, refresh, s.Expires.Sub(a.now()), http.SameSiteLaxMode)
	}
}

func clearSessionCookies(w http.ResponseWriter) {
	setCookie(w, cookieAccess, "", -1, http.SameSiteLaxMode)
	setCookie(w, cookieRefresh, "", -1, http.SameSiteLaxMode)
}
