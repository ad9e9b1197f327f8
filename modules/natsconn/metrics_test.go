package natsconn

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
)

// upGauge is the connection up gauge of name, and whether it exists.
func upGauge(t *testing.T, name string) (float64, bool) {
	t.Helper()
	ch := make(chan prometheus.Metric, 64)
	connUp.Collect(ch)
	close(ch)
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		for _, l := range d.GetLabel() {
			if l.GetName() == "connection" && l.GetValue() == name {
				return d.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

func waitGauge(t *testing.T, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a bound for a failing test only
	for {
		v, ok := upGauge(t, name)
		if ok && v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("connection up gauge of %s: %v (present %v), want %v", name, v, ok, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestConnectionUpGaugeAcrossReplacement: a reload that changes a
// connection's settings dials the new connection before it destructs the
// old one of the same name; the gauge keeps reporting the live one (it
// was deleted with the old one, leaving a connected connection without
// its gauge). A reload that fails destructs the new one and keeps the
// old, whose state the gauge reports again; the last one gone takes the
// gauge with it.
func TestConnectionUpGaugeAcrossReplacement(t *testing.T) {
	s, _ := holdTestConn(t)
	const name = "gauge-test"
	dial := func() *pooledConn {
		c := &Connection{Servers: []string{s.ClientURL()}}
		c.fillDefaults(name)
		p, err := c.dial(name, nil, "", zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.nc.Close)
		return p
	}
	old := dial()
	waitGauge(t, name, 1)
	repl := dial()
	waitGauge(t, name, 1)
	_ = old.Destruct()
	if v, ok := upGauge(t, name); !ok || v != 1 {
		t.Fatalf("after the old connection's Destruct: gauge %v (present %v), want 1", v, ok)
	}
	// a failed reload: a new connection destructed while the other lives
	failed := dial()
	waitGauge(t, name, 1)
	_ = failed.Destruct()
	if v, ok := upGauge(t, name); !ok || v != 1 {
		t.Fatalf("after a failed reload's connection went: gauge %v (present %v), want 1", v, ok)
	}
	// the live one reports its own state
	repl.nc.Close()
	waitGauge(t, name, 0)
	_ = repl.Destruct()
	if v, ok := upGauge(t, name); ok {
		t.Fatalf("no connection of the name left, gauge still %v", v)
	}
}
