// Package forwarded provides neo_forwarded, the edge handler that makes the
// client identity an upstream sees trustworthy.
//
// On every request, early in the edge route, it:
//   - removes the client-address headers a client may forge (Strip:
//     X-Real-IP, True-Client-IP, Client-IP, CF-Connecting-IP, ... by
//     default), whoever sent them;
//   - sets X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and the
//     RFC 7239 Forwarded header from what the edge saw (the peer address, the
//     scheme of the connection, the Host header), replacing whatever the
//     client sent. When the peer is a trusted proxy (the server's
//     trusted_proxies, for example a CDN in front of the edge) the proxy's
//     X-Forwarded-* are kept for reverse_proxy to append to, as Caddy does,
//     and the edge's element is appended to its Forwarded header (replacing
//     a header that does not parse);
//   - optionally sets ClientIPHeader (for example X-Real-IP) to the resolved
//     client address ({client_ip}: the peer, or with trusted proxies the
//     address Caddy resolved from client_ip_headers);
//   - keeps request trailers from carrying any field the edge controls:
//     Host, Neo-*, the forwarding headers and the stripped ones,
//     credentials, framing fields, and every field a trailer may not carry
//     (RFC 9110 section 6.5.1), or with DropTrailers every trailer. Trailers
//     the request did not declare in its Trailer header are dropped too.
//
// reverse_proxy (the platform path) and the NATS transport (the runtime
// path) forward the headers it sets; Forwarded travels as an ordinary header.
package forwarded

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// DefaultStrip is the default Handler.Strip: headers through which
// frameworks, CDNs and load balancers pass a client address, scheme, host or
// original URL, none of which a client may set.
var DefaultStrip = []string{
	"X-Real-IP", "True-Client-IP", "Client-IP", "X-Client-IP", "CF-Connecting-IP",
	"X-Cluster-Client-IP", "Fastly-Client-IP", "X-Envoy-External-Address",
	"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Server", "X-Forwarded-Scheme",
	"X-Forwarded-Ssl", "Front-End-Https", "X-Url-Scheme", "X-Original-Host", "X-Host",
	"X-Original-URL", "X-Rewrite-URL",
}

// The forwarding headers the handler sets.
const (
	HeaderXFF       = "X-Forwarded-For"
	HeaderXFProto   = "X-Forwarded-Proto"
	HeaderXFHost    = "X-Forwarded-Host"
	HeaderForwarded = "Forwarded"
)

// Handler is the neo_forwarded handler.
type Handler struct {
	// Strip lists the request headers removed from every request (any
	// case). Default: DefaultStrip (X-Real-IP, True-Client-IP, Client-IP,
	// X-Client-IP, CF-Connecting-IP, X-Cluster-Client-IP, Fastly-Client-IP,
	// X-Envoy-External-Address, X-Forwarded-Port, X-Forwarded-Prefix,
	// X-Forwarded-Server, X-Forwarded-Scheme, X-Forwarded-Ssl,
	// Front-End-Https, X-Url-Scheme, X-Original-Host, X-Host,
	// X-Original-URL, X-Rewrite-URL).
	Strip []string `json:"strip,omitempty"`
	// ClientIPHeader names a request header set to the resolved client
	// address (after removing any copy the client sent). Default: none.
	ClientIPHeader string `json:"client_ip_header,omitempty"`
	// DropTrailers removes every request trailer instead of only those the
	// edge controls. Default: false.
	DropTrailers bool `json:"drop_trailers,omitempty"`

	strip        []string // canonical
	clientHeader string   // canonical
	logger       *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.neo_forwarded",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision fills defaults.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.Strip == nil {
		h.Strip = DefaultStrip
	}
	h.strip = make([]string, len(h.Strip))
	for i, s := range h.Strip {
		h.strip[i] = http.CanonicalHeaderKey(s)
	}
	h.clientHeader = http.CanonicalHeaderKey(h.ClientIPHeader)
	return nil
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	for i, s := range h.Strip {
		if !httpguts.ValidHeaderFieldName(s) {
			return fmt.Errorf("strip[%d]: %q is not a header name", i, s)
		}
		switch http.CanonicalHeaderKey(s) {
		case "Host", HeaderXFF, HeaderXFProto, HeaderXFHost, HeaderForwarded:
			return fmt.Errorf("strip[%d]: %q is set by the handler, not stripped", i, s)
		}
	}
	if h.ClientIPHeader != "" {
		if !httpguts.ValidHeaderFieldName(h.ClientIPHeader) {
			return fmt.Errorf("client_ip_header: %q is not a header name", h.ClientIPHeader)
		}
		switch c := http.CanonicalHeaderKey(h.ClientIPHeader); {
		case c == "Host", c == HeaderXFF, c == HeaderXFProto, c == HeaderXFHost, c == HeaderForwarded, strings.HasPrefix(c, "Neo-"):
			return fmt.Errorf("client_ip_header: %q is a header the edge sets otherwise", h.ClientIPHeader)
		}
	}
	return nil
}

// ServeHTTP sets the forwarding headers and guards the trailers.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	hdr := r.Header
	for _, k := range h.strip {
		delete(hdr, k)
	}
	trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
	peer := peerAddr(r.RemoteAddr)
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	el := AppendElement(make([]byte, 0, 64), peer, r.Host, proto)
	if trusted {
		// The proxy's X-Forwarded-* stay for reverse_proxy to append to;
		// the edge's hop is appended to its Forwarded.
		if prior := hdr.Values(HeaderForwarded); len(prior) > 0 {
			joined := strings.Join(prior, ", ")
			if _, err := ParseForwarded(joined); err == nil {
				el = append([]byte(joined+", "), el...)
			} else if c := h.logger.Check(zap.DebugLevel, "replaced a malformed Forwarded header from a trusted proxy"); c != nil {
				c.Write(zap.String("host", r.Host), zap.String("remote", r.RemoteAddr))
			}
		}
	} else {
		if peer.IsValid() {
			hdr[HeaderXFF] = []string{peer.Unmap().WithZone("").String()}
		} else {
			delete(hdr, HeaderXFF)
		}
		hdr[HeaderXFProto] = []string{proto}
		hdr[HeaderXFHost] = []string{r.Host}
	}
	hdr[HeaderForwarded] = []string{string(el)}
	if h.clientHeader != "" {
		if ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ip != "" {
			hdr[h.clientHeader] = []string{ip}
		} else {
			delete(hdr, h.clientHeader)
		}
	}
	if len(r.Trailer) > 0 {
		h.guardTrailers(r)
	}
	return next.ServeHTTP(w, r)
}

func peerAddr(remote string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a
}

// allowedTrailer reports whether a request trailer may reach an upstream.
func (h *Handler) allowedTrailer(k string) bool {
	if h.DropTrailers || !httpguts.ValidTrailerHeader(k) {
		return false
	}
	if len(k) >= 4 && strings.EqualFold(k[:4], "neo-") || len(k) >= 4 && strings.EqualFold(k[:4], "neo_") {
		return false
	}
	switch http.CanonicalHeaderKey(k) {
	case "Host", "Cookie", "Set-Cookie", "Authorization", "Proxy-Authorization", "Connection", "Upgrade", "Via",
		HeaderXFF, HeaderXFProto, HeaderXFHost, HeaderForwarded, h.clientHeader:
		return false
	}
	ck := http.CanonicalHeaderKey(k)
	for _, s := range h.strip {
		if ck == s {
			return false
		}
	}
	return true
}

// guardTrailers removes the declared trailers that may not reach an
// upstream now, and wraps the body so that, when it ends (when net/http
// fills in the trailers' values), every trailer not declared and allowed
// is removed before anything forwards them.
func (h *Handler) guardTrailers(r *http.Request) {
	for k := range r.Trailer {
		if !h.allowedTrailer(k) {
			delete(r.Trailer, k)
		}
	}
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	declared := make(map[string]bool, len(r.Trailer))
	for k := range r.Trailer {
		declared[k] = true
	}
	r.Body = &trailerGuard{ReadCloser: r.Body, trailer: r.Trailer, declared: declared}
}

// trailerGuard filters the request's trailers when the body ends.
type trailerGuard struct {
	io.ReadCloser
	trailer  http.Header // the request's map, which net/http fills at EOF
	declared map[string]bool
	done     bool
}

func (g *trailerGuard) Read(p []byte) (int, error) {
	n, err := g.ReadCloser.Read(p)
	if err == io.EOF && !g.done {
		g.done = true
		for k := range g.trailer {
			if !g.declared[k] {
				delete(g.trailer, k)
			}
		}
	}
	return n, err
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
