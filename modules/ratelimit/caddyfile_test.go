package ratelimit

import (
	"testing"

	"github.com/projectneo/caddy-neo/internal/adapttest"
	_ "github.com/projectneo/caddy-neo/modules/neo"
)

func TestCaddyfileAdapt(t *testing.T) { adapttest.RunDir(t, "testdata/caddyfile_adapt") }

func TestCaddyfileErrors(t *testing.T) {
	site := func(body string) string { return ":9000 {\n neo_rate_limit {\n" + body + "\n }\n}" }
	zone := func(body string) string { return site("  zone z {\n" + body + "\n  }") }
	for name, tc := range map[string]struct{ in, want string }{
		"argument":        {":9000 {\n neo_rate_limit x\n}", "wrong argument count"},
		"unknown":         {site("  color red"), `neo_rate_limit: unknown subdirective "color"`},
		"zone name":       {site("  zone {\n key k\n }"), "zone: wrong argument count"},
		"zone twice":      {site("  zone z {\n key k\n events 1\n window 1s\n }\n  zone z {\n key k\n events 1\n window 1s\n }"), `zone "z" defined twice`},
		"no key":          {zone("events 1\n window 1s"), "zone z: key is required"},
		"no events":       {zone("key k\n window 1s"), "zone z: events is required"},
		"no window":       {zone("key k\n events 1"), "zone z: window is required"},
		"events":          {zone("key k\n events many\n window 1s"), "events: want a whole number"},
		"events zero":     {zone("key k\n events 0\n window 1s"), "events: want a whole number"},
		"window":          {zone("key k\n events 1\n window soon"), "window: want a duration"},
		"memory":          {zone("key k\n events 1\n window 1s\n memory 1KiB"), "memory: want a size of at least 64KiB"},
		"ipv6 prefix":     {zone("key k\n events 1\n window 1s\n ipv6_prefix 129"), "ipv6_prefix: want 1 to 128"},
		"ipv4 prefix":     {zone("key k\n events 1\n window 1s\n ipv4_prefix 0"), "ipv4_prefix: want 1 to 32"},
		"duplicate key":   {zone("key k\n key j\n events 1\n window 1s"), `duplicate subdirective "key"`},
		"zone unknown":    {zone("key k\n events 1\n window 1s\n burst 3"), `zone z: unknown subdirective "burst"`},
		"key args":        {zone("key a b\n events 1\n window 1s"), "key: wrong argument count"},
		"interval":        {site("  distributed {\n interval 1ms\n }"), "interval: want a duration of at least 10ms"},
		"replicas":        {site("  distributed {\n replicas none\n }"), "replicas: want a whole number"},
		"dist unknown":    {site("  distributed {\n bucket x\n }"), `distributed: unknown subdirective "bucket"`},
		"max_bytes":       {site("  distributed {\n max_bytes 1KiB\n }"), "max_bytes: want a size of at least 1MiB"},
		"distributed arg": {site("  distributed on"), "wrong argument count"},
	} {
		t.Run(name, func(t *testing.T) { adapttest.ExpectError(t, tc.in, tc.want) })
	}
}
