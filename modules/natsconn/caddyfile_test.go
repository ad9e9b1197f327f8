package natsconn

import (
	"testing"

	"github.com/projectneo/caddy-neo/internal/adapttest"
)

func TestCaddyfileAdapt(t *testing.T) {
	adapttest.RunDir(t, "testdata/caddyfile_adapt")
}

func TestCaddyfileErrors(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"nats twice", "{\n neo_nats {\n }\n neo_nats {\n }\n}\n", "only once"},
		{"unknown nats sub", "{\n neo_nats {\n bogus\n }\n}\n", `unknown subdirective "bogus"`},
		{"dup connection", "{\n neo_nats {\n connection a {\n }\n connection a {\n }\n }\n}\n", "given twice"},
		{"bad size", "{\n neo_nats {\n embedded {\n max_payload lots\n }\n }\n}\n", "max_payload"},
		{"embedded twice", "{\n neo_nats {\n embedded\n embedded\n }\n}\n", `nats: duplicate subdirective "embedded"`},
		{"embedded dup", "{\n neo_nats {\n embedded {\n monitor a:1\n monitor a:2\n }\n }\n}\n", `nats: embedded: duplicate subdirective "monitor"`},
		{"embedded unknown", "{\n neo_nats {\n embedded {\n colour blue\n }\n }\n}\n", `nats: embedded: unknown subdirective "colour"`},
		{"connection dup", "{\n neo_nats {\n connection a {\n token x\n token y\n }\n }\n}\n", `nats: connection "a": duplicate subdirective "token"`},
		{"connection unknown", "{\n neo_nats {\n connection a {\n colour blue\n }\n }\n}\n", `nats: connection "a": unknown subdirective "colour"`},
		{"connection user args", "{\n neo_nats {\n connection a {\n user u p x\n }\n }\n}\n", "user: wrong argument count"},
		{"connection servers empty", "{\n neo_nats {\n connection a {\n servers\n }\n }\n}\n", "servers: wrong argument count"},
		{"connection buf size", "{\n neo_nats {\n connection a {\n reconnect_buf_size lots\n }\n }\n}\n", `nats: connection "a": reconnect_buf_size: bad size`},
		{"embedded authorization without file", "{\n neo_nats {\n embedded {\n authorization\n }\n }\n}\n", "authorization: wrong argument count"},
		{"embedded authorization twice", "{\n neo_nats {\n embedded {\n authorization a.conf\n authorization b.conf\n }\n }\n}\n", `nats: embedded: duplicate subdirective "authorization"`},
		{"embedded anonymous with argument", "{\n neo_nats {\n embedded {\n anonymous yes\n }\n }\n}\n", "anonymous: wrong argument count"},
		{"connection local_user args", "{\n neo_nats {\n connection a {\n local_user edge pw\n }\n }\n}\n", "local_user: wrong argument count"},
	} {
		t.Run(c.name, func(t *testing.T) { adapttest.ExpectError(t, c.in, c.want) })
	}
}
