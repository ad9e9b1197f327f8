package sni

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"console.example.com"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// serve runs a TLS server behind the wrapper (the registry routes only
// tenant.example.com) on loopback; each connection answers "ok" after the handshake.
func serve(t testing.TB, lw *ListenerWrapper) string {
	t.Helper()
	lw.logger = zap.NewNop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	cert := selfSigned(t)
	tln := tls.NewListener(lw.WrapListener(ln), &tls.Config{Certificates: []tls.Certificate{cert}})
	go func() {
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if c.(*tls.Conn).Handshake() == nil {
					_, _ = c.Write([]byte("ok"))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func newWrapper(t testing.TB, allow ...string) *ListenerWrapper {
	t.Helper()
	// Provision without a caddy.Context: Allow by hand.
	lw := &ListenerWrapper{Allow: allow, Timeout: 2e9, exact: map[string]struct{}{},
		routes: func(h string) bool { return h == "tenant.example.com" }}
	for _, a := range allow {
		lw.exact[a] = struct{}{}
	}
	return lw
}

func handshake(addr, name string) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, InsecureSkipVerify: true}) //nolint:gosec // self-signed test server
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 2)
	_, err = c.Read(buf)
	return err
}

func TestListenerRefusesUnroutedSNI(t *testing.T) {
	addr := serve(t, newWrapper(t, "console.example.com"))
	for _, name := range []string{"console.example.com", "tenant.example.com", "TENANT.example.com."} {
		if err := handshake(addr, name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	err := handshake(addr, "removed.example.com")
	if err == nil || !strings.Contains(err.Error(), "tls: unrecognized name") {
		t.Fatalf("unrouted name: %v, want an unrecognized_name alert", err)
	}
	// No SNI passes to crypto/tls, whose only certificate then serves.
	if err := handshake(addr, ""); err != nil {
		t.Fatalf("no SNI: %v", err)
	}
}

// TestListenerSlowHello: a client that sends part of a ClientHello and
// stops is closed after Timeout, not held.
func TestListenerSlowHello(t *testing.T) {
	lw := newWrapper(t)
	lw.Timeout = 2e8
	addr := serve(t, lw)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{22, 3, 1, 0, 100, 1}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second)) // only a guard against a hang
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("read: %v, want the server to close the connection", err)
	}
}
