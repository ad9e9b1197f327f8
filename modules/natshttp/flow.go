package natshttp

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/nats-io/nats.go"

	"github.com/projectneo/caddy-neo/internal/cfblock"
)

// FlowControl is how a stream moves bodies: the settings both ends of a
// request share. The edge's transport and the stage gateway embed it, so
// its fields are top-level fields of either's JSON and subdirectives of
// either's Caddyfile block.
type FlowControl struct {
	// ChunkTimeout bounds the wait for each further body chunk or credit:
	// on the edge in either direction, on a gateway for request body
	// chunks and response credit. Default: 60s.
	ChunkTimeout caddy.Duration `json:"chunk_timeout,omitempty"`
	// ChunkSize is the largest body payload per message; it is further
	// capped to fit the server's max_payload (less 1 KiB for the frame's
	// headers). Default: 1 MiB, so the server's max_payload decides (its
	// default of 1 MiB gives 1023 KiB chunks). Fewer, larger messages move
	// bulk bodies faster: 1 MiB chunks carried 1 GiB about 15% faster than
	// 256 KiB chunks (integration/bench/nats). A buffer grows to it only
	// for bodies that fill it.
	ChunkSize int `json:"chunk_size,omitempty"`
	// Window is how many body frames the sending side may have in flight
	// unacknowledged (the edge's window covers both directions, a
	// gateway's the request body). Default: 8.
	Window int `json:"window,omitempty"`
	// SocketWindow is Window for an upgraded connection (a WebSocket), in
	// each direction. A socket's frames are one read of a connection each
	// (at most 4 KiB from a client, stream_buffer_size from a replica), and
	// a receiver grants credit every window/2 frames: with 8, one message
	// in five on an echoing socket was a credit; with 32, one in seventeen
	// (integration/bench/websocket). Default: 32.
	SocketWindow int `json:"socket_window,omitempty"`
}

// The flow-control defaults and bounds.
const (
	defaultChunkTimeout = 60 * time.Second
	defaultChunkSize    = 1 << 20
	defaultWindow       = 8
	defaultSocketWindow = 32
	minChunkSize        = 1024
	maxChunkSize        = 64 << 20
)

func (fc *FlowControl) fillDefaults() {
	if fc.ChunkTimeout == 0 {
		fc.ChunkTimeout = caddy.Duration(defaultChunkTimeout)
	}
	if fc.ChunkSize == 0 {
		fc.ChunkSize = defaultChunkSize
	}
	if fc.Window == 0 {
		fc.Window = defaultWindow
	}
	if fc.SocketWindow == 0 {
		fc.SocketWindow = defaultSocketWindow
	}
}

// validate checks the settings, after fillDefaults.
func (fc *FlowControl) validate() error {
	if fc.ChunkTimeout < 0 {
		return errors.New("chunk_timeout: must not be negative")
	}
	if fc.ChunkSize < minChunkSize || fc.ChunkSize > maxChunkSize {
		return fmt.Errorf("chunk_size: want %d to %d, got %d", minChunkSize, maxChunkSize, fc.ChunkSize)
	}
	if fc.Window < 1 || fc.Window > maxWindow {
		return fmt.Errorf("window: want 1 to %d, got %d", maxWindow, fc.Window)
	}
	if fc.SocketWindow < 1 || fc.SocketWindow > maxWindow {
		return fmt.Errorf("socket_window: want 1 to %d, got %d", maxWindow, fc.SocketWindow)
	}
	return nil
}

// chunk is the largest body payload per message on nc: ChunkSize, capped
// to fit nc's max_payload less 1 KiB for the frame's headers.
func (fc *FlowControl) chunk(nc *nats.Conn) int {
	c := fc.ChunkSize
	if mp := int(nc.MaxPayload()); mp > 0 && c > mp-1024 {
		c = mp - 1024
	}
	return max(c, 512)
}

// window is the window of a stream: SocketWindow for an upgraded
// connection (upgrade is not ""), else Window.
func (fc *FlowControl) window(upgrade string) int {
	if upgrade != "" {
		return fc.SocketWindow
	}
	return fc.Window
}

// chunkTimeout is ChunkTimeout as a time.Duration.
func (fc *FlowControl) chunkTimeout() time.Duration { return time.Duration(fc.ChunkTimeout) }

// unmarshalSubdirective sets the setting a Caddyfile subdirective names
// from its value; ok is false when name is not a flow-control setting.
func (fc *FlowControl) unmarshalSubdirective(d *caddyfile.Dispenser, name, value string) (ok bool, err error) {
	switch name {
	case "chunk_timeout":
		fc.ChunkTimeout, err = cfblock.Duration(d, name, value)
	case "chunk_size":
		fc.ChunkSize, err = cfblock.Size(d, name, value)
	case "window":
		fc.Window, err = cfblock.Count(d, name, value)
	case "socket_window":
		fc.SocketWindow, err = cfblock.Count(d, name, value)
	default:
		return false, nil
	}
	return true, err
}
