package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// TestDocCaddyfiles adapts every complete Caddyfile example in README.md and
// docs/*.md with this distribution's modules, so that a documented example
// cannot stop working unnoticed.
//
// Convention: a fenced block whose info string is `caddyfile` is a complete
// Caddyfile and must adapt; a fragment (a directive, a snippet, a block to
// paste into a file) is fenced as `caddy`. Environment placeholders {$X}
// take the values set below or their defaults.
func TestDocCaddyfiles(t *testing.T) {
	for k, v := range map[string]string{
		"NEO_IDENTITY_KEK": "doc-example-key-encryption-key-0123456789",
	} {
		t.Setenv(k, v)
	}
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../README.md")
	adapter := caddyconfig.GetAdapter("caddyfile")
	n := 0
	for _, f := range files {
		for _, ex := range caddyfileBlocks(t, f) {
			n++
			name := filepath.Base(f) + ":" + ex.line
			t.Run(name, func(t *testing.T) {
				// named as a file of caddyfiles/, so that its imports resolve as a role file's do
				if _, _, err := adapter.Adapt(ex.body, map[string]any{"filename": "../../caddyfiles/doc-example.Caddyfile"}); err != nil {
					t.Errorf("%s:%s: the example does not adapt: %v", f, ex.line, err)
				}
			})
		}
	}
	if n == 0 {
		t.Fatal("no ```caddyfile examples found: is the fence convention still in use?")
	}
}

type docExample struct {
	line string // first line of the body, 1-based
	body []byte
}

// caddyfileBlocks returns the bodies of the ```caddyfile fences of file.
func caddyfileBlocks(t *testing.T, file string) []docExample {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []docExample
	var cur *bytes.Buffer
	start := 0
	sc := bufio.NewScanner(bytes.NewReader(src))
	for ln := 1; sc.Scan(); ln++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && trimmed == "```caddyfile":
			cur, start = new(bytes.Buffer), ln+1
		case cur != nil && trimmed == "```":
			out = append(out, docExample{line: itoa(start), body: cur.Bytes()})
			cur = nil
		case cur != nil:
			cur.WriteString(line)
			cur.WriteByte('\n')
		}
	}
	if cur != nil {
		t.Fatalf("%s:%d: unterminated ```caddyfile fence", file, start-1)
	}
	return out
}

func itoa(n int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
		if n == 0 {
			return string(b)
		}
	}
}
