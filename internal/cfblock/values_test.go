package cfblock

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func TestValueParsers(t *testing.T) {
	d := sub("x 1")
	if v, err := Duration(d, "x", "1m30s"); err != nil || v != caddy.Duration(90*time.Second) {
		t.Errorf("Duration: %v %v", v, err)
	}
	for _, bad := range []string{"-1s", "soon", ""} {
		if _, err := Duration(d, "x", bad); err == nil || !strings.Contains(err.Error(), "x: bad duration") {
			t.Errorf("Duration(%q): %v", bad, err)
		}
	}
	if v, err := Size(d, "x", "128KiB"); err != nil || v != 128<<10 {
		t.Errorf("Size: %v %v", v, err)
	}
	for _, bad := range []string{"lots", "2GiB", "-1"} {
		if _, err := Size(d, "x", bad); err == nil || !strings.Contains(err.Error(), "x: bad size") {
			t.Errorf("Size(%q): %v", bad, err)
		}
	}
	if v, err := Count(d, "x", "16"); err != nil || v != 16 {
		t.Errorf("Count: %v %v", v, err)
	}
	for _, bad := range []string{"-1", "1.5", "x"} {
		if _, err := Count(d, "x", bad); err == nil || !strings.Contains(err.Error(), "x: want a non-negative integer") {
			t.Errorf("Count(%q): %v", bad, err)
		}
	}
}
