package wafaccel

import (
	"testing"
	_ "unsafe" // go:linkname, for the test oracle below

	"github.com/corazawaf/coraza/v3/experimental/plugins"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
)

// The differential tests need Coraza's own @rx as an oracle, but this
// package replaces it in the registry when it initialises. Package-level
// variables are initialised before any init function runs, so the test binary
// reads the original factory out of Coraza's registry first. This is the only
// use of Coraza internals in the repository, and it is confined to tests.
//
//go:linkname corazaOperatorRegistry github.com/corazawaf/coraza/v3/internal/operators.operators
var corazaOperatorRegistry map[string]plugintypes.OperatorFactory

var corazaRx = corazaOperatorRegistry["rx"]

// withCorazaRx runs fn while Coraza's own @rx is the registered operator:
// WAFs built inside fn use it for every @rx rule.
func withCorazaRx(t testing.TB, fn func()) {
	t.Helper()
	if corazaRx == nil {
		t.Fatal("could not capture Coraza's own rx operator")
	}
	plugins.RegisterOperator("rx", corazaRx)
	defer plugins.RegisterOperator("rx", newRxOperator)
	fn()
}

func TestOracleIsCorazas(t *testing.T) {
	op, err := corazaRx(plugintypes.OperatorOptions{Arguments: "a+b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, mine := op.(*rxOperator); mine {
		t.Fatal("oracle is this package's operator, not Coraza's")
	}
}
