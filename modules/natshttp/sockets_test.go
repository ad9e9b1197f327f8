package natshttp

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func TestSocketsValidate(t *testing.T) {
	if err := (&Sockets{StreamCloseDelay: caddy.Duration(-time.Second)}).Validate(); err == nil || !strings.Contains(err.Error(), "stream_close_delay") {
		t.Fatalf("negative stream_close_delay: %v", err)
	}
	if err := (&Sockets{StreamCloseDelay: caddy.Duration(time.Second)}).Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestReadLoop: every read is sent as it arrives, also one that fills the
// small buffer exactly (a loop that waited to fill a larger one would hold
// those bytes while the peer waits for their answer), and the large buffer
// goes back to the pool after a short read.
func TestReadLoop(t *testing.T) {
	a, b := net.Pipe()
	sent := make(chan []byte, 64)
	done := make(chan error, 1)
	var total int64
	go func() {
		n, err := readLoop(b, func(p []byte) (int, error) {
			sent <- append([]byte(nil), p...)
			return len(p), nil
		})
		total = n
		done <- err
	}()
	recv := func(want int) []byte {
		t.Helper()
		var got []byte
		for len(got) < want {
			select {
			case p := <-sent:
				got = append(got, p...)
			case <-time.After(10 * time.Second):
				t.Fatalf("%d of %d bytes sent", len(got), want)
			}
		}
		return got
	}
	for _, size := range []int{smallReadBuffer, 1, 3 * largeReadBuffer, smallReadBuffer, 100} {
		msg := bytes.Repeat([]byte{byte(size)}, size)
		go func() { _, _ = a.Write(msg) }()
		if got := recv(size); !bytes.Equal(got, msg) {
			t.Fatalf("%d bytes: got %d different bytes", size, len(got))
		}
	}
	a.Close()
	if err := <-done; err != nil {
		t.Fatalf("EOF: %v", err)
	}
	if want := int64(2*smallReadBuffer + 1 + 3*largeReadBuffer + 100); total != want {
		t.Fatalf("total %d, want %d", total, want)
	}
}

// TestReadLoopSendError: a failed send ends the loop with its error.
func TestReadLoopSendError(t *testing.T) {
	_, err := readLoop(strings.NewReader("x"), func([]byte) (int, error) { return 0, io.ErrClosedPipe })
	if err != io.ErrClosedPipe {
		t.Fatalf("got %v", err)
	}
}
