// Package neometrics registers caddy-neo's collectors on a configuration's
// metrics registry. It is the one way our modules register metrics.
//
// Our collectors are package-level: a connection, a storage or a stream
// outlives the configuration that made it, so its series do too, and every
// configuration's registry registers the same collectors. Registering a
// collector a registry already holds is therefore not an error; any other
// failure (a name taken by a collector with other labels or help, an invalid
// descriptor) is returned, so that a module's Provision fails the config load
// instead of serving without its metrics.
package neometrics

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers each collector on reg. A nil reg (Caddy without a
// metrics registry, as in unit tests of a bare module) registers nothing.
// Collectors reg already holds are skipped; every other error is returned,
// joined, each naming the collector's first metric.
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	var errs []error
	for _, c := range cs {
		err := reg.Register(c)
		if err == nil {
			continue
		}
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) && are.ExistingCollector == c {
			continue
		}
		errs = append(errs, fmt.Errorf("registering metric %s: %w", name(c), err))
	}
	return errors.Join(errs...)
}

// name is the fully-qualified name of c's first metric, for error messages.
func name(c prometheus.Collector) string {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	n := "(no descriptor)"
	first := true
	for d := range ch {
		if first {
			n = d.String()
			first = false
		}
	}
	return n
}
