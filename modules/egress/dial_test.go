package egress

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"testing"
)

// TestDialOnlyCheckedAddresses: a name resolving to internal and external
// addresses is dialled on the external one only, from the source address;
// a name resolving only to internal addresses is refused with 403.
func TestDialOnlyCheckedAddresses(t *testing.T) {
	ext, err := net.Listen("tcp", "127.0.0.10:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	port := ext.Addr().(*net.TCPAddr).Port
	internal, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.1:%d: %v", port, err)
	}
	defer internal.Close()
	accepted := make(chan string, 4)
	go func() {
		for {
			c, err := internal.Accept()
			if err != nil {
				return
			}
			accepted <- c.RemoteAddr().String()
			c.Close()
		}
	}()
	g := &Gateway{
		Zone: "az-a", SourceAddress: "127.0.0.2", TreatAsExternal: []string{"127.0.0.10"},
		StaticHosts: map[string][]string{
			"mixed.test":  {"127.0.0.1", "::1", "127.0.0.10"},
			"inside.test": {"127.0.0.1", "169.254.169.254"},
		},
		ConnectTimeout: 5e9,
	}
	if err := g.compile(); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		c, err := g.dial(context.Background(), Target{Host: "mixed.test", Port: uint16(port)})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.RemoteAddr().String(); got != "127.0.0.10:"+strconv.Itoa(port) {
			t.Errorf("dialled %s", got)
		}
		if got := c.LocalAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.2" {
			t.Errorf("source %s, want 127.0.0.2", got)
		}
		c.Close()
	}
	_, err = g.dial(context.Background(), Target{Host: "inside.test", Port: uint16(port)})
	var d *denial
	if !errors.As(err, &d) || d.status != http.StatusForbidden || d.verdict != verdictInternal {
		t.Fatalf("inside.test: want a 403 denied_internal, got %v", err)
	}
	// The dialer's Control function refuses on its own, whatever reached it.
	if _, err := g.dialer.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); !errors.As(err, &d) {
		t.Fatalf("the dialer itself must refuse 127.0.0.1, got %v", err)
	}
	select {
	case a := <-accepted:
		t.Fatalf("the internal listener accepted a connection from %s", a)
	default:
	}
}
