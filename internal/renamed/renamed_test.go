package renamed

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/projectneo/caddy-neo/modules/all"
)

func TestOldNamesNameTheNewOnes(t *testing.T) {
	took := Register()
	if len(took) != len(Names)+len(GlobalOptions) {
		t.Fatalf("Register took %q, want every old name", took)
	}
	// a second call (or a plugin owning the names) takes nothing, never panics
	if again := Register(); len(again) != 0 {
		t.Fatalf("second Register took %q", again)
	}

	adapt := func(src string) error {
		_, _, err := caddyfile.Adapter{ServerType: httpServerType()}.Adapt([]byte(src), nil)
		return err
	}
	for _, c := range []struct{ name, src, want string }{
		{"global nats", "{\n\tnats {\n\t\tembedded\n\t}\n}\n", `"nats" was renamed "neo_nats"`},
		{"global nats_gateway", "{\n\tnats_gateway {\n\t\tserver s\n\t}\n}\n", `"nats_gateway" was renamed "neo_nats_gateway"`},
		{"global waf_accel", "{\n\twaf_accel off\n}\n", `"waf_accel" was renamed "neo_waf_accel"`},
		{"transport nats", "example.com {\n\treverse_proxy nats {\n\t\ttransport nats {\n\t\t\tzones a\n\t\t}\n\t}\n}\n", `"http.reverse_proxy.transport.nats" was renamed "http.reverse_proxy.transport.neo_nats"`},
		{"storage nats", "{\n\tstorage nats {\n\t\tbucket b\n\t}\n}\n", `"caddy.storage.nats" was renamed "caddy.storage.neo_nats"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := adapt(c.src)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("adapt: %v, want an error containing %s", err, c.want)
			}
		})
	}

	for _, c := range []struct{ name, cfg, want string }{
		{"app nats", `{"admin":{"disabled":true},"apps":{"nats":{"connections":{"default":{}}}}}`, `"nats" was renamed "neo_nats"`},
		{"app nats_gateway", `{"admin":{"disabled":true},"apps":{"nats_gateway":{"gateways":[]}}}`, `"nats_gateway" was renamed "neo_nats_gateway"`},
		{"app waf_accel", `{"admin":{"disabled":true},"apps":{"waf_accel":{"off":true}}}`, `"waf_accel" was renamed "neo_waf_accel"`},
		{"storage nats", `{"admin":{"disabled":true},"storage":{"module":"nats","bucket":"b"}}`, `"caddy.storage.nats" was renamed "caddy.storage.neo_nats"`},
		{"transport nats", `{"admin":{"disabled":true},"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[{"handler":"reverse_proxy","transport":{"protocol":"nats"},"upstreams":[{"dial":"nats"}]}]}]}}}}}`, `"http.reverse_proxy.transport.nats" was renamed`},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := caddy.Load([]byte(c.cfg), true)
			if err == nil {
				_ = caddy.Stop()
				t.Fatal("loaded a config with an old name")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("load: %v, want an error containing %s", err, c.want)
			}
		})
	}
}

func httpServerType() caddyfile.ServerType { return httpcaddyfile.ServerType{} }
