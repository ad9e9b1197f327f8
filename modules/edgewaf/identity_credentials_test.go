package edgewaf

import (
	"fmt"
	"net/url"
	"testing"

	"github.com/projectneo/caddy-neo/internal/crstests"
)

// Values the identity service issues or checks that CRS at paranoia 1
// reads as attacks: a refresh token whose MAC starts with "cVs" (after the
// token's dot: ".cvs", a file name of CRS 930120, about 1 in 5,000 tokens),
// and a password with quotes and a comment sequence.
const (
	fpRefreshToken = "J3E2TbbeRXfyUYst9VB8Bg.1.cVs1SkAdjFDjZweHuA65D1NQLmM6NnZQ6ViIGj71yRo"
	fpPassword     = "pa' OR '1'='1"
)

// TestIdentityCredentialsNotInspected: the edge snippet's WAF does not
// inspect the identity's own cookies anywhere (SecRuleUpdateTargetByTag
// at load), nor the secrets its endpoints check themselves (rule 900967): a signed-in user whose
// token happens to contain ".cvs" is not refused. The same values in an
// app's cookie or form are still inspected and blocked.
func TestIdentityCredentialsNotInspected(t *testing.T) {
	w := newEdgeWAF(t, edgeDirectives(t, true))
	host := [2]string{"Host", "acme-dev.apps.example.com"}
	get := func(uri, cookie string) crstests.Request {
		return crstests.Request{Method: "GET", URI: uri, Version: "HTTP/1.1", Headers: [][2]string{host, {"Cookie", cookie}}}
	}
	form := func(uri string, v url.Values) crstests.Request {
		body := v.Encode()
		return crstests.Request{Method: "POST", URI: uri, Version: "HTTP/1.1", Body: []byte(body), Headers: [][2]string{host,
			{"Content-Type", "application/x-www-form-urlencoded"}, {"Content-Length", fmt.Sprint(len(body))}}}
	}
	for _, c := range []struct {
		name    string
		r       crstests.Request
		blocked bool
	}{
		{"refresh cookie", get("/ledger/books", "__Host-neo_rt="+fpRefreshToken), false},
		{"access cookie", get("/ledger/books", "theme=dark; __Host-neo_at=x."+fpRefreshToken), false},
		{"refresh token grant", form("/identity/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {fpRefreshToken}}), false},
		{"sign-in password", form("/identity/login", url.Values{"username": {"ada"}, "password": {fpPassword}, "csrf": {fpRefreshToken}}), false},
		{"provider callback", get("/identity/callback?code="+fpRefreshToken+"&state="+fpRefreshToken, ""), false},
		// The same values where an app receives them: inspected.
		{"app cookie", get("/ledger/books", "session="+fpRefreshToken), true},
		{"app form", form("/ledger/token", url.Values{"refresh_token": {fpRefreshToken}}), true},
		{"app password field", form("/ledger/login", url.Values{"password": {fpPassword}}), true},
		{"other field at the identity", form("/identity/login", url.Values{"username": {fpPassword}}), true},
		{"other cookie name with the prefix", get("/ledger/books", "__Host-neo_x="+fpRefreshToken), true},
	} {
		if blocked, ids := w.judge(c.r); blocked != c.blocked {
			t.Errorf("%s: blocked %v (rules %v), want %v", c.name, blocked, ids, c.blocked)
		}
	}
}
