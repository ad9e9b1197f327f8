package echo

import (
	"testing"

	"github.com/projectneo/caddy-neo/internal/adapttest"
)

func TestCaddyfileAdapt(t *testing.T) {
	adapttest.RunDir(t, "testdata/caddyfile_adapt")
}

func TestCaddyfileErrors(t *testing.T) {
	for name, tc := range map[string]struct{ in, want string }{
		"unknown subdirective": {":9000 {\n neo_echo {\n  color blue\n }\n}", `unknown subdirective "color"`},
		"duplicate":            {":9000 {\n neo_echo {\n  zone a\n  zone b\n }\n}", `duplicate subdirective "zone"`},
		"missing value":        {":9000 {\n neo_echo {\n  zone\n }\n}", "wrong argument count"},
		"extra value":          {":9000 {\n neo_echo {\n  zone a b\n }\n}", "wrong argument count"},
		"inline args":          {":9000 {\n neo_echo foo\n}", "wrong argument count"},
		"bad max":              {":9000 {\n neo_echo {\n  max_response_bytes -1\n }\n}", "max_response_bytes"},
	} {
		t.Run(name, func(t *testing.T) { adapttest.ExpectError(t, tc.in, tc.want) })
	}
}
