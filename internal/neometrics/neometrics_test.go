package neometrics

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegister(t *testing.T) {
	a := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "neo_test_total", Help: "h"}, []string{"x"})
	b := prometheus.NewCounter(prometheus.CounterOpts{Name: "neo_other_total", Help: "h"})
	if err := Register(nil, a, b); err != nil {
		t.Fatalf("nil registry: %v", err)
	}
	reg := prometheus.NewRegistry()
	if err := Register(reg, a, b); err != nil {
		t.Fatalf("first registration: %v", err)
	}
	// Every config registers the same package-level collectors again.
	if err := Register(reg, a, b); err != nil {
		t.Fatalf("same collectors again: %v", err)
	}
	// Another collector under a taken name is a defect the load must report.
	clash := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "neo_test_total", Help: "h"}, []string{"y"})
	err := Register(reg, clash)
	if err == nil || !strings.Contains(err.Error(), "neo_test_total") {
		t.Fatalf("clashing collector: got %v, want an error naming neo_test_total", err)
	}
	same := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "neo_test_total", Help: "h"}, []string{"x"})
	if err := Register(reg, same); err == nil {
		t.Fatal("a second collector with the same descriptor was accepted silently")
	}
}

// TestOnlyHelperRegisters holds the modules to this package: a registration
// written by hand (Register, MustRegister) is the variant that dropped errors.
func TestOnlyHelperRegisters(t *testing.T) {
	root := filepath.Join("..", "..", "modules")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(src), "\n") {
			if strings.Contains(line, "MustRegister(") || strings.Contains(line, "reg.Register(") || strings.Contains(line, "GetMetricsRegistry().Register(") {
				t.Errorf("%s:%d registers a collector by hand; use neometrics.Register", path, i+1)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
