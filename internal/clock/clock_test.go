package clock

import (
	"testing"
	"time"
)

func TestFakeTicker(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	tk := f.NewTicker(time.Second)
	if n, _ := f.Tickers(); n != 1 {
		t.Fatalf("%d tickers, want 1", n)
	}
	select {
	case <-tk.C():
		t.Fatal("ticked before the clock moved")
	default:
	}
	f.Advance(999 * time.Millisecond)
	select {
	case <-tk.C():
		t.Fatal("ticked early")
	default:
	}
	f.Advance(time.Millisecond)
	if got := <-tk.C(); !got.Equal(start.Add(time.Second)) {
		t.Fatalf("tick at %v", got)
	}
	// like time.Ticker: ticks are dropped while the channel is full
	f.Advance(5 * time.Second)
	if got := <-tk.C(); !got.Equal(start.Add(2 * time.Second)) {
		t.Fatalf("first buffered tick at %v", got)
	}
	select {
	case <-tk.C():
		t.Fatal("more than one buffered tick")
	default:
	}
	if !f.Now().Equal(start.Add(6 * time.Second)) {
		t.Fatalf("now %v", f.Now())
	}
	_, changed := f.Tickers()
	tk.Stop()
	<-changed
	if n, _ := f.Tickers(); n != 0 {
		t.Fatalf("%d tickers after Stop", n)
	}
	f.Advance(time.Hour)
	select {
	case <-tk.C():
		t.Fatal("a stopped ticker ticked")
	default:
	}
}
