package neo

import (
	"net/http"
	"strings"
)

// IdentityCookiePrefix starts the name of every cookie of the identity
// service (neo_signin, neo_identity). They are host-only (__Host-) and set
// only by neo_signin; no upstream ever receives them.
const IdentityCookiePrefix = "__Host-neo_"

// TakeIdentityCookies removes every cookie named with IdentityCookiePrefix
// from h's Cookie headers, calling take (if not nil) with each one's name
// and value, and deletes a Cookie header left empty. Requests without such
// a cookie are not changed (one substring search per Cookie header).
func TakeIdentityCookies(h http.Header, take func(name, value string)) {
	hs := h["Cookie"]
	found := false
	for _, c := range hs {
		if strings.Contains(c, IdentityCookiePrefix) {
			found = true
			break
		}
	}
	if !found {
		return
	}
	var keep []string
	for _, c := range hs {
		var rest []string
		for part := range strings.SplitSeq(c, ";") {
			name, val, _ := strings.Cut(strings.TrimSpace(part), "=")
			name = strings.TrimSpace(name)
			switch {
			case name == "":
			case strings.HasPrefix(name, IdentityCookiePrefix):
				if take != nil {
					take(name, strings.TrimSpace(val))
				}
			default:
				rest = append(rest, strings.TrimSpace(part))
			}
		}
		if len(rest) > 0 {
			keep = append(keep, strings.Join(rest, "; "))
		}
	}
	if len(keep) == 0 {
		h.Del("Cookie")
	} else {
		h["Cookie"] = keep
	}
}
