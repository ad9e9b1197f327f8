package natsstorage

import (
	"testing"

	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/projectneo/caddy-neo/internal/adapttest"
	_ "github.com/projectneo/caddy-neo/modules/natsconn"
)

func TestCaddyfileAdapt(t *testing.T) {
	adapttest.RunDir(t, "testdata/caddyfile_adapt")
}

func TestCaddyfileErrors(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"unknown", "{\n storage neo_nats {\n nope 1\n }\n}\n", `unknown subdirective "nope"`},
		{"duplicate", "{\n storage neo_nats {\n bucket a\n bucket b\n }\n}\n", `storage neo_nats: duplicate subdirective "bucket"`},
		{"argument", "{\n storage neo_nats extra\n}\n", "wrong argument count"},
		{"missing value", "{\n storage neo_nats {\n bucket\n }\n}\n", "bucket: wrong argument count"},
		{"replicas", "{\n storage neo_nats {\n replicas three\n }\n}\n", "storage neo_nats: replicas"},
		{"lock_ttl", "{\n storage neo_nats {\n lock_ttl soon\n }\n}\n", "lock_ttl"},
		{"inline_max", "{\n storage neo_nats {\n inline_max lots\n }\n}\n", "inline_max"},
	} {
		t.Run(c.name, func(t *testing.T) { adapttest.ExpectError(t, c.in, c.want) })
	}
}
