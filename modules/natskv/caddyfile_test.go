package natskv

import (
	"testing"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/projectneo/caddy-neo/internal/adapttest"
)

func TestCaddyfileAdapt(t *testing.T) {
	adapttest.RunDir(t, "testdata/caddyfile_adapt")
}

func TestCaddyfileErrors(t *testing.T) {
	for name, tc := range map[string]struct{ in, want string }{
		"unknown sub":   {"{\n neo {\n  store nats {\n   colour blue\n  }\n }\n}\n:80", `unknown subdirective "colour"`},
		"twice":         {"{\n neo {\n  store nats {\n   bucket a\n   bucket b\n  }\n }\n}\n:80", `store nats: duplicate subdirective "bucket"`},
		"arg":           {"{\n neo {\n  store nats x\n }\n}\n:80", "wrong argument count"},
		"replicas":      {"{\n neo {\n  store nats {\n   replicas three\n  }\n }\n}\n:80", "replicas: want a number"},
		"timeout":       {"{\n neo {\n  store nats {\n   timeout soon\n  }\n }\n}\n:80", "timeout"},
		"missing value": {"{\n neo {\n  store nats {\n   bucket\n  }\n }\n}\n:80", "wrong argument count"},
		"unknown store": {"{\n neo {\n  store redis\n }\n}\n:80", `unknown store "redis" (known: file, nats)`},
	} {
		t.Run(name, func(t *testing.T) { adapttest.ExpectError(t, tc.in, tc.want) })
	}
}
