package neonats

import (
	"testing"

	"github.com/projectneo/caddy-neo/internal/adapttest"
)

func TestCaddyfileAdapt(t *testing.T) {
	adapttest.RunDir(t, "testdata/caddyfile_adapt")
}

func TestCaddyfileErrors(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"nats twice", "{\n nats {\n }\n nats {\n }\n}\n", "only once"},
		{"unknown nats sub", "{\n nats {\n bogus\n }\n}\n", `unknown subdirective "bogus"`},
		{"dup connection", "{\n nats {\n connection a {\n }\n connection a {\n }\n }\n}\n", "given twice"},
		{"bad size", "{\n nats {\n embedded {\n max_payload lots\n }\n }\n}\n", "max_payload"},
		{"gateway without server", "{\n nats_gateway {\n stage prod\n zone az-a\n }\n}\n", "server is required"},
		{"gateway unknown", "{\n nats_gateway {\n server s\n nope 1\n }\n}\n", `unknown subdirective "nope"`},
		{"transport unknown", ":80 {\n reverse_proxy nats {\n transport nats {\n nope 1\n }\n }\n}\n", `unknown subdirective "nope"`},
		{"transport dup", ":80 {\n reverse_proxy nats {\n transport nats {\n window 1\n window 2\n }\n }\n}\n", "duplicate"},
	} {
		t.Run(c.name, func(t *testing.T) { adapttest.ExpectError(t, c.in, c.want) })
	}
}
