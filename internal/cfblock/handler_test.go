package cfblock

import (
	"net/http"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

type testHandler struct{ Zone string }

func (*testHandler) ServeHTTP(http.ResponseWriter, *http.Request, caddyhttp.Handler) error {
	return nil
}

func (t *testHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	return Values(d, "test_handler", func(name, v string) error {
		if name != "zone" {
			return Unknown(d, "test_handler", name)
		}
		t.Zone = v
		return nil
	})
}

func TestHandler(t *testing.T) {
	h := httpcaddyfile.Helper{Dispenser: caddyfile.NewTestDispenser("test_handler {\n zone a\n}")}
	got, err := Handler[testHandler](h)
	if err != nil {
		t.Fatal(err)
	}
	if th, ok := got.(*testHandler); !ok || th.Zone != "a" {
		t.Errorf("Handler = %#v, want *testHandler with zone a", got)
	}

	h = httpcaddyfile.Helper{Dispenser: caddyfile.NewTestDispenser("test_handler {\n colour a\n}")}
	if _, err := Handler[testHandler](h); err == nil {
		t.Error("unknown subdirective: no error")
	}
}
