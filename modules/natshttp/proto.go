package natshttp

// Message framing of HTTP over NATS (version 1). Every message carries NATS
// headers; HTTP header fields are prefixed so they can never be mistaken for
// control fields:
//
//	Neo-Nats-Kind     head | resp | data | credit | cancel | error | probe
//	Neo-Nats-Seq      frame number within a body stream (head/resp = 0)
//	Neo-Nats-Eof      "1" on the last frame of a body stream
//	Neo-Nats-Inbox    the sender's per-request inbox (gateway → edge)
//	Neo-Nats-Credit   frames the receiver may be sent beyond those already allowed
//	H-<name>          an HTTP header field (repeated fields repeat the NATS header)
//	T-<name>          an HTTP trailer field (on the frame with Neo-Nats-Eof)
//
// head (edge → subject, reply = edge inbox) also has Neo-Nats-Method,
// Neo-Nats-Path (escaped), Neo-Nats-Query (raw), Neo-Nats-Host,
// Neo-Nats-Length (-1 unknown), Neo-Nats-Trailer (announced trailer names),
// Neo-Nats-Window (response frames the edge accepts before sending credit),
// Neo-Nats-Timeout (milliseconds the edge waits for the response head after
// the request is sent; the gateway cancels the work past it),
// Neo-Nats-Client (the client's IP address as the edge resolved it),
// Neo-Nats-Scheme (http or https, as the client reached the edge) and
// Neo-Nats-Bind ("1": the edge binds the stream, see below).
// resp (gateway → edge inbox) has Neo-Nats-Status. head and resp carry the
// first body bytes as payload.
//
// Every frame carries a NATS reply subject: the sender's own per-request
// inbox (on the edge: the inbox, or a numbered reply subject under it, see
// mux). A receiver bound to its peer drops frames whose reply subject is
// not the peer's; an edge always binds, a gateway when the head has
// Neo-Nats-Bind.
//
// probe (edge → gateway's per-request inbox) checks that the gateway still
// serves the request: the gateway answers probe (with the last frame it
// sent in Neo-Nats-Seq) while the request is in progress and error "request
// not in progress" when it no longer knows it (the response was sent, and
// lost); NATS answers "no responders" when the gateway's connection is gone.

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/projectneo/caddy-neo/modules/natsconn"
)

const (
	hdrKind    = "Neo-Nats-Kind"
	hdrSeq     = "Neo-Nats-Seq"
	hdrEOF     = "Neo-Nats-Eof"
	hdrInbox   = "Neo-Nats-Inbox"
	hdrCredit  = "Neo-Nats-Credit" //nolint:gosec // G101: a header name (flow-control credit), not a credential
	hdrMethod  = "Neo-Nats-Method"
	hdrPath    = "Neo-Nats-Path"
	hdrQuery   = "Neo-Nats-Query"
	hdrHost    = "Neo-Nats-Host"
	hdrLength  = "Neo-Nats-Length"
	hdrTrailer = "Neo-Nats-Trailer"
	hdrWindow  = "Neo-Nats-Window"
	hdrStatus  = "Neo-Nats-Status"
	hdrError   = "Neo-Nats-Error"
	hdrVersion = "Neo-Nats-Version"
	hdrTimeout = "Neo-Nats-Timeout"
	hdrClient  = "Neo-Nats-Client"
	hdrScheme  = "Neo-Nats-Scheme"
	hdrBind    = "Neo-Nats-Bind"
	// hdrUpgrade: the protocol a request asks to switch to ("websocket",
	// the only one carried), and in a 101 resp frame the one switched to.
	// The HTTP Upgrade and Connection fields are hop-by-hop and not framed.
	hdrUpgrade = "Neo-Nats-Upgrade"
	// hdrCompact ("1", in a version 2 head, tag 'f'): the edge speaks
	// version 3, compact data and credit frames (proto2.go).
	hdrCompact = "Neo-Nats-Compact"

	prefixHeader  = "H-"
	prefixTrailer = "T-"

	kindHead   = "head"
	kindResp   = "resp"
	kindData   = "data"
	kindCredit = "credit"
	kindCancel = "cancel"
	kindError  = "error"
	kindProbe  = "probe"
	// kindNoResponders is not sent: it is what a NATS "503 no responders"
	// status message parses to.
	kindNoResponders = "no-responders"

	protoVersion = "1"
)

// ErrBadFrame is wrapped by every framing error.
var ErrBadFrame = errors.New("malformed neo nats frame")

// frame is a parsed message.
type frame struct {
	kind   string
	seq    uint64
	eof    bool
	inbox  string
	credit int
	status int
	errMsg string
	data   []byte
	h      nats.Header // version 1
	// version 2 (see proto2.go): the control values in the order of v2Ctl,
	// and the HTTP header and trailer fields, checked
	v2      bool
	ctl     [len(v2Ctl)]string
	hdr, tr http.Header
}

// get returns the control field name ("" when absent).
func (f *frame) get(name string) string {
	if !f.v2 {
		return f.h.Get(name)
	}
	if i := v2CtlIndex(name); i >= 0 {
		return f.ctl[i]
	}
	return ""
}

// flag returns a yes/no control field: absent is false, "1" true, any
// other value a malformed frame.
func (f *frame) flag(name string) (bool, error) {
	switch v := f.get(name); v {
	case "":
		return false, nil
	case "1":
		return true, nil
	default:
		return false, fmt.Errorf("%w: %s %q", ErrBadFrame, name, v)
	}
}

// fields returns the HTTP header (prefixHeader) or trailer (prefixTrailer)
// fields, never a nil map.
func (f *frame) fields(prefix string) (http.Header, error) {
	if !f.v2 {
		return httpFields(f.h, prefix)
	}
	h := f.hdr
	if prefix == prefixTrailer {
		h = f.tr
	}
	if h == nil {
		h = http.Header{}
	}
	return h, nil
}

// maxWindow bounds credits and windows.
const maxWindow = 1024

// parseFrame checks the control fields of a message.
func parseFrame(m *nats.Msg) (*frame, error) {
	var (
		f   *frame
		err error
	)
	if isV2(len(m.Header), m.Data) {
		if f, err = parseV2(m.Data); err != nil {
			return nil, err
		}
		if f.kind == kindData || f.kind == kindCredit {
			return f, nil // compact: checked by parseV2
		}
	} else {
		if m.Header == nil {
			return nil, fmt.Errorf("%w: no headers", ErrBadFrame)
		}
		f = &frame{h: m.Header, data: m.Data}
		f.kind = m.Header.Get(hdrKind)
		if f.kind == "" {
			if m.Header.Get("Status") == "503" && len(m.Data) == 0 {
				f.kind = kindNoResponders
				return f, nil
			}
			return nil, fmt.Errorf("%w: no %s", ErrBadFrame, hdrKind)
		}
		switch f.kind {
		case kindHead, kindResp, kindData, kindCredit, kindCancel, kindError, kindProbe:
		default:
			return nil, fmt.Errorf("%w: unknown kind %q", ErrBadFrame, f.kind)
		}
	}
	if s := f.get(hdrSeq); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: %s %q", ErrBadFrame, hdrSeq, s)
		}
		f.seq = n
	} else if f.kind == kindData {
		return nil, fmt.Errorf("%w: data frame without %s", ErrBadFrame, hdrSeq)
	}
	if f.eof, err = f.flag(hdrEOF); err != nil {
		return nil, err
	}
	if s := f.get(hdrInbox); s != "" {
		if !natsconn.ValidSubject(s) {
			return nil, fmt.Errorf("%w: %s %q", ErrBadFrame, hdrInbox, s)
		}
		f.inbox = s
	}
	if s := f.get(hdrCredit); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > maxWindow {
			return nil, fmt.Errorf("%w: %s %q", ErrBadFrame, hdrCredit, s)
		}
		f.credit = n
	}
	if f.kind == kindResp {
		s := f.get(hdrStatus)
		n, err := strconv.Atoi(s)
		// 101 only as the switch of a WebSocket handshake
		if err != nil || n < 200 && !(n == http.StatusSwitchingProtocols && f.get(hdrUpgrade) != "") || n > 599 {
			return nil, fmt.Errorf("%w: %s %q", ErrBadFrame, hdrStatus, s)
		}
		f.status = n
	}
	if f.kind == kindError || f.kind == kindCancel {
		f.errMsg = f.get(hdrError)
	}
	return f, nil
}

// reqHead is the HTTP request described by a head frame.
type reqHead struct {
	method, path, query, host string
	length                    int64
	header                    http.Header
	trailerNames              []string
	window                    int
	headTimeout               time.Duration
	// client is the client's address as the edge resolved it (invalid when
	// the edge did not send it), scheme "http", "https" or "" (not sent)
	client netip.Addr
	scheme string
	// bind: the edge binds the stream, so the gateway does too
	bind bool
	// compact: the edge speaks version 3 (compact data and credit frames)
	compact bool
	// upgrade: "websocket" when the request asks to switch to WebSocket
	// (the stream then carries the socket's bytes both ways after a 101)
	upgrade string
}

// parseReqHead checks and extracts the request of a head frame.
func parseReqHead(f *frame) (*reqHead, error) {
	if f.kind != kindHead {
		return nil, fmt.Errorf("%w: want a head frame, got %q", ErrBadFrame, f.kind)
	}
	if v := f.get(hdrVersion); !f.v2 && v != protoVersion {
		return nil, fmt.Errorf("%w: protocol version %q, want %s", ErrBadFrame, v, protoVersion)
	}
	rh := &reqHead{
		method: f.get(hdrMethod),
		path:   f.get(hdrPath),
		query:  f.get(hdrQuery),
		host:   f.get(hdrHost),
	}
	if !validHTTPToken(rh.method) {
		return nil, fmt.Errorf("%w: method %q", ErrBadFrame, rh.method)
	}
	if !strings.HasPrefix(rh.path, "/") || !validFieldValue(rh.path) || strings.ContainsAny(rh.path, " ?#") {
		return nil, fmt.Errorf("%w: path %q", ErrBadFrame, rh.path)
	}
	if !validFieldValue(rh.query) || strings.ContainsAny(rh.query, " #") {
		return nil, fmt.Errorf("%w: query %q", ErrBadFrame, rh.query)
	}
	if !validFieldValue(rh.host) || strings.ContainsAny(rh.host, " /") {
		return nil, fmt.Errorf("%w: host %q", ErrBadFrame, rh.host)
	}
	rh.length = -1
	if s := f.get(hdrLength); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < -1 {
			return nil, fmt.Errorf("%w: %s %q", ErrBadFrame, hdrLength, s)
		}
		rh.length = n
	}
	if f.eof && rh.length >= 0 && rh.length != int64(len(f.data)) {
		return nil, fmt.Errorf("%w: %s %d but %d inline bytes", ErrBadFrame, hdrLength, rh.length, len(f.data))
	}
	n, err := strconv.Atoi(f.get(hdrWindow))
	if err != nil || n < 1 || n > maxWindow {
		return nil, fmt.Errorf("%w: %s %q", ErrBadFrame, hdrWindow, f.get(hdrWindow))
	}
	rh.window = n
	if s := f.get(hdrTimeout); s != "" {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil || ms < 0 || ms > 24*3600*1000 {
			return nil, fmt.Errorf("%w: %s %q", ErrBadFrame, hdrTimeout, s)
		}
		rh.headTimeout = time.Duration(ms) * time.Millisecond
	}
	if s := f.get(hdrClient); s != "" {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("%w: %s %q", ErrBadFrame, hdrClient, s)
		}
		rh.client = a
	}
	switch s := f.get(hdrScheme); s {
	case "", "http", "https":
		rh.scheme = s
	default:
		return nil, fmt.Errorf("%w: %s %q", ErrBadFrame, hdrScheme, s)
	}
	if rh.bind, err = f.flag(hdrBind); err != nil {
		return nil, err
	}
	if rh.compact, err = f.flag(hdrCompact); err != nil {
		return nil, err
	}
	switch s := f.get(hdrUpgrade); s {
	case "":
	case "websocket":
		if f.eof || rh.method != http.MethodGet {
			return nil, fmt.Errorf("%w: %s on a %s request with no stream", ErrBadFrame, hdrUpgrade, rh.method)
		}
		rh.upgrade = s
	default:
		return nil, fmt.Errorf("%w: %s %q", ErrBadFrame, hdrUpgrade, s)
	}
	hdr, err := f.fields(prefixHeader)
	if err != nil {
		return nil, err
	}
	rh.header = hdr
	if s := f.get(hdrTrailer); s != "" {
		for _, name := range strings.Split(s, ",") {
			name = strings.TrimSpace(name)
			if !validHTTPToken(name) {
				return nil, fmt.Errorf("%w: trailer name %q", ErrBadFrame, name)
			}
			if ck := http.CanonicalHeaderKey(name); !forbiddenTrailer(ck) {
				rh.trailerNames = append(rh.trailerNames, ck)
			}
		}
	}
	return rh, nil
}

// forbiddenTrailer reports whether a request trailer field (canonical name
// ck) is never carried: fields the edge sets or removes (Host, Neo-*,
// X-Forwarded-*, Forwarded and the client address fields X-Real-Ip,
// True-Client-Ip, Client-Ip, X-Client-Ip, Cf-Connecting-Ip), hop-by-hop
// fields and Content-Length. The edge leaves them out of the trailers it
// frames and a gateway drops them from the trailers it receives.
func forbiddenTrailer(ck string) bool {
	if isHopByHop(ck) || strings.HasPrefix(ck, "Neo-") || strings.HasPrefix(ck, "X-Forwarded-") {
		return true
	}
	switch ck {
	case "Host", "Forwarded", "Content-Length", "X-Real-Ip", "True-Client-Ip", "Client-Ip", "X-Client-Ip", "Cf-Connecting-Ip":
		return true
	}
	return false
}

// requestTrailers returns tr without the fields forbiddenTrailer names (tr
// itself when it has none of them).
func requestTrailers(tr http.Header) http.Header {
	n := 0
	for k := range tr {
		if forbiddenTrailer(http.CanonicalHeaderKey(k)) {
			n++
		}
	}
	if n == 0 {
		return tr
	}
	out := make(http.Header, len(tr)-n)
	for k, vv := range tr {
		if !forbiddenTrailer(http.CanonicalHeaderKey(k)) {
			out[k] = vv
		}
	}
	return out
}

// httpFields extracts the HTTP fields carried under prefix.
func httpFields(h nats.Header, prefix string) (http.Header, error) {
	n := 0
	for k := range h {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	if n == 0 {
		return http.Header{}, nil
	}
	out := make(http.Header, n)
	for k, vv := range h {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		name := k[len(prefix):]
		if !validHTTPToken(name) {
			return nil, fmt.Errorf("%w: field name %q", ErrBadFrame, name)
		}
		for _, v := range vv {
			if !validFieldValue(v) {
				return nil, fmt.Errorf("%w: value of field %q", ErrBadFrame, name)
			}
		}
		ck := http.CanonicalHeaderKey(name)
		if prev, ok := out[ck]; ok {
			out[ck] = append(prev[:len(prev):len(prev)], vv...)
			continue
		}
		// The decoded message is ours alone: its value slices are shared,
		// capped so that an append copies.
		out[ck] = vv[:len(vv):len(vv)]
	}
	return out, nil
}

// putHTTPFields copies HTTP fields under prefix, dropping hop-by-hop fields
// and fields that could not be framed (bad names, CR, LF or NUL in values).
// dst shares src's value slices (capped, so an append to either copies): it
// is only read, to encode a message, before src changes.
func putHTTPFields(dst nats.Header, src http.Header, prefix string) {
	conn := connectionNames(src)
	for k, vv := range src {
		ck, keep := framedValues(k, vv, conn)
		if len(keep) == 0 {
			continue
		}
		key := prefixedKey(prefix, ck)
		if prev, ok := dst[key]; ok {
			dst[key] = append(prev[:len(prev):len(prev)], keep...)
			continue
		}
		dst[key] = keep
	}
}

// connectionNames are the fields the Connection field names (hop-by-hop).
func connectionNames(src http.Header) []string {
	var conn []string
	for _, v := range src["Connection"] {
		for _, name := range strings.Split(v, ",") {
			conn = append(conn, http.CanonicalHeaderKey(strings.TrimSpace(name)))
		}
	}
	return conn
}

// framedValues returns the canonical name of src's field k and the values
// of it that may be framed: none for hop-by-hop fields (conn lists those
// the Connection field names) and bad names, and no values with CR, LF or
// NUL. keep shares vv when nothing is dropped (capped: an append copies).
func framedValues(k string, vv []string, conn []string) (ck string, keep []string) {
	ck = http.CanonicalHeaderKey(k)
	if len(vv) == 0 || isHopByHop(ck) || contains(conn, ck) || !validHTTPToken(k) {
		return ck, nil
	}
	keep = vv[:len(vv):len(vv)]
	for i, v := range vv {
		if !validFieldValue(v) {
			keep = append([]string(nil), vv[:i]...)
			for _, v := range vv[i+1:] {
				if validFieldValue(v) {
					keep = append(keep, v)
				}
			}
			break
		}
	}
	return ck, keep
}

// prefixedKeys caches prefix+name for the field names seen, so that
// framing a request does not build the same strings again. It is bounded:
// names beyond maxPrefixedKeys (a client can send any) are built each time.
var (
	prefixedKeys      sync.Map // prefixedKeyID -> string
	prefixedKeysCount atomic.Int32
)

const maxPrefixedKeys = 1024

type prefixedKeyID struct{ prefix, name string }

func prefixedKey(prefix, name string) string {
	if v, ok := prefixedKeys.Load(prefixedKeyID{prefix, name}); ok {
		return v.(string)
	}
	k := prefix + name
	if prefixedKeysCount.Load() < maxPrefixedKeys {
		if _, loaded := prefixedKeys.LoadOrStore(prefixedKeyID{prefix, name}, k); !loaded {
			prefixedKeysCount.Add(1)
		}
	}
	return k
}

var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func isHopByHop(ck string) bool { return contains(hopByHop, ck) }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// validHTTPToken reports whether s is an RFC 9110 token (field names, methods).
func validHTTPToken(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// validFieldValue rejects what would break NATS header framing.
func validFieldValue(s string) bool {
	return !strings.ContainsAny(s, "\r\n\x00")
}

// newFrame starts a frame's header; size is the number of fields expected,
// so that the map is allocated once.
func newFrame(kind string, size int) nats.Header {
	h := make(nats.Header, size)
	h[hdrKind] = constValue(kind)
	return h
}

// constValues are the single-value slices of fixed field values, shared by
// every frame (capped: an append copies).
var constValues = func() map[string][]string {
	m := map[string][]string{}
	for _, v := range []string{kindHead, kindResp, kindData, kindCredit, kindProbe, kindCancel, kindError, protoVersion, "1", "0", "http", "https", errNotInProgress,
		http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, ""} {
		m[v] = []string{v}[:1:1]
	}
	return m
}()

// statusValues are the Neo-Nats-Status values 100-599, shared.
var statusValues = func() (s [500][]string) {
	for i := range s {
		s[i] = []string{strconv.Itoa(100 + i)}[:1:1]
	}
	return s
}()

func statusValue(code int) []string {
	if code >= 100 && code <= 599 {
		return statusValues[code-100]
	}
	return []string{strconv.Itoa(code)}
}

// constValue is a single-value field slice, shared when v is a fixed value.
func constValue(v string) []string {
	if vv, ok := constValues[v]; ok {
		return vv
	}
	return []string{v}
}
