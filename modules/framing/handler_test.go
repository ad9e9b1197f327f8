package framing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/projectneo/caddy-neo/internal/adapttest"
)

func TestCaddyfileAdapt(t *testing.T) { adapttest.RunDir(t, "testdata/caddyfile_adapt") }

func TestCaddyfileErrors(t *testing.T) {
	adapttest.ExpectError(t, ":9000 {\n neo_framing x\n}", "wrong argument count")
	adapttest.ExpectError(t, ":9000 {\n neo_framing {\n  read_body_idle soon\n }\n}", "read_body_idle: want a duration")
	adapttest.ExpectError(t, ":9000 {\n neo_framing {\n  color x\n }\n}", `unknown subdirective "color"`)
	adapttest.ExpectError(t, "{\n servers {\n  listener_wrappers {\n   neo_framing x\n  }\n }\n}\n:9000 {\n respond ok\n}", "wrong argument count")
}

type netErr struct{ timeout bool }

func (e netErr) Error() string   { return "i/o timeout" }
func (e netErr) Timeout() bool   { return e.timeout }
func (e netErr) Temporary() bool { return false }

func TestClassify(t *testing.T) {
	for err, want := range map[error]int{
		&Violation{Reason: "x", InBody: true}:                                       400,
		fmt.Errorf("wrapped: %w", &Violation{Reason: "x"}):                          400,
		io.ErrUnexpectedEOF:                                                         400,
		errors.New("invalid byte in chunk length"):                                  400,
		errors.New("http chunk length too large"):                                   400,
		errors.New("chunked line ends with bare LF"):                                400,
		errors.New("request declared a Content-Length of 5 but only wrote 2 bytes"): 400,
		textproto.ProtocolError("malformed MIME header line: x"):                    400,
		netErr{timeout: true}:                                                       408,
		os.ErrDeadlineExceeded:                                                      408,
		&http.MaxBytesError{Limit: 1}:                                               0,
		caddyhttp.Error(413, &http.MaxBytesError{Limit: 1}):                         0,
		errors.New("connection reset by peer"):                                      0,
	} {
		if got, _ := Classify(err); got != want {
			t.Errorf("%v: %d, want %d", err, got, want)
		}
	}
}

// errReader fails after its data.
type errReader struct {
	data string
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// A handler that fails on a broken body (as the WAF and reverse_proxy do,
// with 500 or 502) gets the body's status instead; other errors pass.
func TestHandlerStatus(t *testing.T) {
	h := &Handler{ReadBodyIdle: -1}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	reading := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if _, err := io.ReadAll(r.Body); err != nil {
			return caddyhttp.Error(http.StatusBadGateway, err)
		}
		return nil
	})
	for name, tc := range map[string]struct {
		err  error
		want int
	}{
		"violation": {&Violation{Reason: "invalid chunk size", InBody: true}, 400},
		"timeout":   {os.ErrDeadlineExceeded, 408},
		"too large": {&http.MaxBytesError{Limit: 1}, 502},
		"other":     {errors.New("boom"), 502},
	} {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", io.NopCloser(&errReader{data: "he", err: tc.err}))
			err := h.ServeHTTP(httptest.NewRecorder(), r, reading)
			var he caddyhttp.HandlerError
			if !errors.As(err, &he) || he.StatusCode != tc.want {
				t.Fatalf("%v, want status %d", err, tc.want)
			}
			if tc.want == 400 && !strings.Contains(err.Error(), "invalid chunk size") {
				t.Fatalf("the reason is lost: %v", err)
			}
		})
	}
}
