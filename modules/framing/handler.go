package framing

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/projectneo/caddy-neo/modules/neo"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is the neo_framing handler: the request body's framing errors get
// the right status and a log line (tenant, reason), never a 5xx.
//
// Whichever handler reads the body (the WAF, reverse_proxy, the NATS
// transport) sees a read error when the body's framing is broken; on their
// own they answer 500 or 502. neo_framing, placed before them, watches the
// body's reads and answers instead:
//   - 400 for a body whose framing is broken: a violation found by the
//     neo_framing listener wrapper, net/http's own chunked-encoding errors
//     (invalid or overlong chunk sizes, missing CRLF, bare LF), malformed
//     trailers, a body shorter than its Content-Length (HTTP/1.1 and
//     HTTP/2), an HTTP/2 body longer than its Content-Length;
//   - 408 when the client stopped sending the body (a read timeout).
//
// A body larger than request_body's limit keeps its 413. A response already
// sent cannot change; the error is logged then.
//
// It also applies the idle timeout to body reads (ReadBodyIdle) that Caddy's
// server applies by default: Caddy's server-wide version replaces the body of
// net/http's own request, so net/http no longer closes the connection at
// once after an early answer (413 for a declared Content-Length above the
// limit, 403, 429) but first reads up to 256 KiB more of the body, waiting
// for a client that waits for the answer. Turn the server's off
// (`timeouts { read_body_idle -1 }`, as snippets/edge-global.caddy does) and
// let this handler apply it.
type Handler struct {
	// ReadBodyIdle is how long a read of the request body may stall before
	// the connection is aborted; the server's read_body timeout still caps
	// the whole body. Default: 1m; negative: off.
	ReadBodyIdle caddy.Duration `json:"read_body_idle,omitempty"`

	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.neo_framing",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision fills defaults.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.ReadBodyIdle == 0 {
		h.ReadBodyIdle = caddy.Duration(time.Minute)
	}
	return nil
}

// ServeHTTP watches the body's reads.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if r.Body == nil || r.Body == http.NoBody {
		return next.ServeHTTP(w, r)
	}
	if h.ReadBodyIdle > 0 {
		ir := &caddyhttp.IdleTimeoutReader{
			ReadCloser: r.Body,
			Ctrl:       http.NewResponseController(w),
			Deadline: caddyhttp.IdleDeadline{
				Start:   time.Now(),
				Timeout: time.Duration(h.ReadBodyIdle),
			},
			Logger:            h.logger,
			DrainDeadline:     r.ProtoMajor == 1 && r.ContentLength != 0,
			ClearBetweenReads: r.ProtoMajor == 2,
		}
		if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv.ReadTimeout > 0 {
			// keep the server's read_body ceiling (counted from here, not
			// from the request's first byte: later by the head's read time)
			ir.Deadline.HardDeadline = time.Now().Add(time.Duration(srv.ReadTimeout))
		}
		defer ir.HandlerDone()
		r.Body = ir
	}
	eb := &errBody{ReadCloser: r.Body}
	r.Body = eb
	err := next.ServeHTTP(w, r)
	if eb.err == nil {
		return err
	}
	status, reason := Classify(eb.err)
	if status == 0 {
		return err
	}
	if ce := h.logger.Check(zapcore.WarnLevel, "malformed request body refused"); ce != nil {
		fields := []zap.Field{zap.Int("status", status), zap.String("reason", reason), zap.String("host", r.Host), zap.String("remote", r.RemoteAddr)}
		if a := neo.Current(); a != nil {
			if t, ok := a.Registry().Snapshot().TenantForHost(r.Host); ok {
				fields = append(fields, zap.String("tenant", t.Name))
			}
		}
		ce.Write(fields...)
	}
	return caddyhttp.Error(status, eb.err)
}

// Classify maps a request body read error to the status the client gets and
// a reason for the log; 0 for errors that are not the body's framing or
// timing (request_body's 413 among them).
func Classify(err error) (int, string) {
	var v *Violation
	var mbe *http.MaxBytesError
	var pe textproto.ProtocolError
	var ne net.Error
	msg := err.Error()
	switch {
	case errors.As(err, &mbe):
		return 0, ""
	case errors.As(err, &v):
		return http.StatusBadRequest, v.Reason
	case errors.Is(err, io.ErrUnexpectedEOF):
		return http.StatusBadRequest, "body ended before its declared end"
	case errors.As(err, &pe):
		return http.StatusBadRequest, "malformed trailer: " + string(pe)
	case errors.As(err, &ne) && ne.Timeout():
		return http.StatusRequestTimeout, "request body timed out"
	}
	for _, s := range goBodyErrors {
		if strings.Contains(msg, s) {
			return http.StatusBadRequest, msg
		}
	}
	return 0, ""
}

// goBodyErrors are net/http's body framing errors (unexported values).
var goBodyErrors = []string{
	"invalid byte in chunk length", "http chunk length too large", "empty hex number for chunk length",
	"malformed chunked encoding", "chunked line ends with bare LF", "invalid CR in chunked line",
	"header line too long", "chunked encoding contains too much non-data", "suspiciously long trailer",
	"request declared a Content-Length of", "sender tried to send more than declared Content-Length",
	"malformed MIME header",
}

// errBody records the first read error other than EOF.
type errBody struct {
	io.ReadCloser
	err error
}

func (b *errBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
