package natshttp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// wsFrame is one WebSocket frame with the given opcode and payload length,
// masked or not.
func wsFrame(op byte, n int, masked bool) []byte {
	b := []byte{0x80 | op, 0}
	switch {
	case n < 126:
		b[1] = byte(n)
	case n < 1<<16:
		b[1] = 126
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b[1] = 127
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if masked {
		b[1] |= 0x80
		b = append(b, 1, 2, 3, 4)
	}
	return append(b, bytes.Repeat([]byte{0x88}, n)...) // payload bytes that look like close headers
}

func TestWSFramesBoundaries(t *testing.T) {
	var stream []byte
	var ends []int
	for i, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 70000} {
		stream = append(stream, wsFrame(0x2, n, i%2 == 1)...)
		ends = append(ends, len(stream))
	}
	for _, chunk := range []int{1, 2, 3, 7, 1000, 1 << 20} {
		var tr wsFrames
		at := map[int]bool{}
		for off := 0; off < len(stream); off += chunk {
			end := min(off+chunk, len(stream))
			for i := off; i < end; i++ { // byte by byte inside the chunk too
				tr.feed(stream[i : i+1])
				at[i+1] = tr.atBoundary()
			}
		}
		for _, e := range ends {
			if !at[e] {
				t.Fatalf("chunk %d: not at a boundary after a frame ending at %d", chunk, e)
			}
		}
		if tr.closeSeen {
			t.Fatalf("chunk %d: a close frame seen in payload bytes", chunk)
		}
		if !tr.atBoundary() || at[ends[3]-1] {
			t.Fatalf("chunk %d: boundary inside a frame", chunk)
		}
	}
	var tr wsFrames
	tr.feed(append(wsFrame(0x1, 3, false), wsFrame(0x8, 2, false)...))
	if !tr.closeSeen || !tr.atBoundary() {
		t.Fatal("a close frame not seen")
	}
}

func TestCloseFrame(t *testing.T) {
	b := closeFrame(wsInternalError, "stage gateway unavailable")
	if b[0] != 0x88 || int(b[1]) != len(b)-2 || binary.BigEndian.Uint16(b[2:]) != 1011 || string(b[4:]) != "stage gateway unavailable" {
		t.Fatalf("close frame % x", b)
	}
	var tr wsFrames
	tr.feed(b)
	if !tr.closeSeen || !tr.atBoundary() {
		t.Fatal("our close frame does not parse")
	}
	if c, _ := closeCodeFor(peerError{"peer failed: " + goingAwayMsg}); c != wsGoingAway {
		t.Fatalf("going away: %d", c)
	}
	if c, _ := closeCodeFor(errors.New("probe missed")); c != wsInternalError {
		t.Fatalf("gone: %d", c)
	}
	if len(closeFrame(1011, string(make([]byte, 300)))) != 127 {
		t.Fatal("reason not cut to 123 bytes")
	}
}

// FuzzWSFrames: any byte stream from a replica, cut anywhere, never makes
// the tracker panic, and its state does not depend on the cuts.
func FuzzWSFrames(f *testing.F) {
	f.Add(wsFrame(0x1, 5, false), 1)
	f.Add(append(wsFrame(0x2, 300, true), wsFrame(0x8, 0, false)...), 7)
	f.Add([]byte{0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 3)
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		var whole, parts wsFrames
		whole.feed(data)
		if cut <= 0 {
			cut = 1
		}
		for off := 0; off < len(data); off += cut {
			parts.feed(data[off:min(off+cut, len(data))])
		}
		if whole != parts {
			t.Fatalf("state depends on the cuts: %+v vs %+v", whole, parts)
		}
	})
}
