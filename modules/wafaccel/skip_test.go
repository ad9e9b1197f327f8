package wafaccel

import (
	"testing"
)

// TestSkipReachOnJSON guards rule skipping where it matters most: on the
// 2 KB JSON POST most candidate rules must be removed before evaluation.
func TestSkipReachOnJSON(t *testing.T) {
	h := newProductionHandlerSkip(t, true)
	countStats = true
	defer func() { countStats = false }()
	for _, s := range scenarios() {
		c0, r0, x0 := skipCalls.Load(), skipRemoved.Load(), rxCalls.Load()
		serve(h, s)
		c, r, x := skipCalls.Load()-c0, skipRemoved.Load()-r0, rxCalls.Load()-x0
		t.Logf("%s: %d candidate decisions, %d rules removed; %d @rx evaluations left", s.name, c, r, x)
	}
}
