package natsconn

import (
	"net"
	"testing"
)

// natsUsers are the users of the production authorization files
// (caddyfiles/nats), as modules/natshttp's permission tests list them.
var natsUsers = []string{"edge", "platform", "gw-prod", "gw-dev", "gw-prod-acme", "monitor"}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
