package wafaccel

import (
	"testing"
	"testing/fstest"
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

var (
	corazaRx         = corazaOperatorRegistry["rx"]
	corazaPM         = corazaOperatorRegistry["pm"]
	corazaPMFromFile = corazaOperatorRegistry["pmFromFile"]
	corazaPMF        = corazaOperatorRegistry["pmf"]
)

// withCorazaRx runs fn while Coraza's own operators are registered in place
// of this package's (@rx, @pm, @pmFromFile, @pmf): WAFs built inside fn are
// stock Coraza.
func withCorazaRx(t testing.TB, fn func()) {
	t.Helper()
	if corazaRx == nil || corazaPM == nil || corazaPMFromFile == nil || corazaPMF == nil {
		t.Fatal("could not capture Coraza's own operators")
	}
	plugins.RegisterOperator("rx", corazaRx)
	plugins.RegisterOperator("pm", corazaPM)
	plugins.RegisterOperator("pmFromFile", corazaPMFromFile)
	plugins.RegisterOperator("pmf", corazaPMF)
	defer func() {
		plugins.RegisterOperator("rx", newRxOperator)
		plugins.RegisterOperator("pm", newPMOperator)
		plugins.RegisterOperator("pmFromFile", newPMFromFileOperator)
		plugins.RegisterOperator("pmf", newPMFromFileOperator)
	}()
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
	for _, f := range []plugintypes.OperatorFactory{corazaPM, corazaPMFromFile, corazaPMF} {
		op, err := f(plugintypes.OperatorOptions{Arguments: "a b", Path: []string{"."}, Root: fstest.MapFS{"a b": {Data: []byte("x")}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, mine := op.(*pmOperator); mine {
			t.Fatal("oracle is this package's operator, not Coraza's")
		}
	}
}
