package natshttp

import (
	"testing"

	"github.com/projectneo/caddy-neo/internal/adapttest"
)

func TestCaddyfileAdapt(t *testing.T) {
	adapttest.RunDir(t, "testdata/caddyfile_adapt")
}

func TestCaddyfileErrors(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"gateway without server", "{\n neo_nats_gateway {\n stage prod\n zone az-a\n }\n}\n", "server is required"},
		{"gateway unknown", "{\n neo_nats_gateway {\n server s\n nope 1\n }\n}\n", `unknown subdirective "nope"`},
		{"transport unknown", ":80 {\n reverse_proxy nats {\n transport neo_nats {\n nope 1\n }\n }\n}\n", `unknown subdirective "nope"`},
		{"transport dup", ":80 {\n reverse_proxy nats {\n transport neo_nats {\n window 1\n window 2\n }\n }\n}\n", `transport neo_nats: duplicate subdirective "window"`},
		{"transport zones empty", ":80 {\n reverse_proxy nats {\n transport neo_nats {\n zones\n }\n }\n}\n", "zones: wrong argument count"},
		{"gateway dup", "{\n neo_nats_gateway {\n server s\n server t\n }\n}\n", `neo_nats_gateway: duplicate subdirective "server"`},
		{"gateway drain_timeout", "{\n neo_nats_gateway {\n server s\n drain_timeout soon\n }\n}\n", `drain_timeout: bad duration "soon"`},
		{"transport chunk_size", ":80 {\n reverse_proxy nats {\n transport neo_nats {\n chunk_size lots\n }\n }\n}\n", `chunk_size: bad size "lots"`},
		{"transport socket_window", ":80 {\n reverse_proxy nats {\n transport neo_nats {\n socket_window x\n }\n }\n}\n", `socket_window: want a non-negative integer, got "x"`},
		{"sockets stream_close_delay", ":80 {\n neo_nats_sockets {\n stream_close_delay soon\n }\n}\n", `stream_close_delay: bad duration "soon"`},
		{"sockets unknown", ":80 {\n neo_nats_sockets {\n delay 1s\n }\n}\n", `unknown subdirective "delay"`},
		{"sockets argument", ":80 {\n neo_nats_sockets 1s\n}\n", "wrong argument count"},
		{"neo_http unknown", ":80 {\n reverse_proxy 127.0.0.1:1 {\n transport neo_http {\n nope 1\n }\n }\n}\n", "nope"},
		{"gateway subjects empty", "{\n neo_nats_gateway {\n server s\n subjects\n }\n}\n", "subjects: wrong argument count"},
	} {
		t.Run(c.name, func(t *testing.T) { adapttest.ExpectError(t, c.in, c.want) })
	}
}
