package sni

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/projectneo/caddy-neo/internal/adapttest"
	_ "github.com/projectneo/caddy-neo/modules/framing"
)

// clientHello returns the bytes a real crypto/tls client sends first, for
// server name name ("" : no SNI).
func clientHello(t testing.TB, name string) []byte {
	t.Helper()
	c, s := net.Pipe()
	cfg := &tls.Config{ServerName: name, InsecureSkipVerify: name == ""} //nolint:gosec // the handshake never completes
	go func() {
		_ = tls.Client(c, cfg).Handshake()
	}()
	var out []byte
	buf := make([]byte, 64<<10)
	// The hello arrives in one Write; read until it is whole.
	for {
		n, err := s.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, buf[:n]...)
		if len(out) >= 5 && len(out) >= 5+int(out[3])<<8|int(out[4]) {
			break
		}
	}
	_ = s.Close()
	_ = c.Close()
	return out
}

// fragment re-frames one handshake record into records of at most size
// payload bytes.
func fragment(rec []byte, size int) []byte {
	payload := rec[5:]
	var out []byte
	for len(payload) > 0 {
		n := min(size, len(payload))
		out = append(out, 22, rec[1], rec[2], byte(n>>8), byte(n))
		out = append(out, payload[:n]...)
		payload = payload[n:]
	}
	return out
}

func TestReadClientHello(t *testing.T) {
	hello := clientHello(t, "app.acme.example.com")
	for _, tc := range []struct {
		name string
		r    func([]byte) io.Reader
		data []byte
	}{
		{"whole", func(b []byte) io.Reader { return bytes.NewReader(b) }, hello},
		{"one byte per read", func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }, hello},
		{"records of 1 byte", func(b []byte) io.Reader { return bytes.NewReader(b) }, fragment(hello, 1)},
		{"records of 3 bytes, half reads", func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) }, fragment(hello, 3)},
		{"records of 100 bytes", func(b []byte) io.Reader { return bytes.NewReader(b) }, fragment(hello, 100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trailing := []byte("more bytes after the hello")
			raw, name, err := ReadClientHello(tc.r(append(append([]byte{}, tc.data...), trailing...)))
			if err != nil {
				t.Fatal(err)
			}
			if name != "app.acme.example.com" {
				t.Fatalf("server name %q", name)
			}
			if !bytes.Equal(raw, tc.data) {
				t.Fatalf("raw is not the bytes of the hello records (%d bytes, want %d)", len(raw), len(tc.data))
			}
		})
	}
}

func TestReadClientHelloNoSNI(t *testing.T) {
	hello := clientHello(t, "")
	raw, name, err := ReadClientHello(bytes.NewReader(hello))
	if err != nil || name != "" || !bytes.Equal(raw, hello) {
		t.Fatalf("name %q, err %v, raw equal %v", name, err, bytes.Equal(raw, hello))
	}
}

func TestReadClientHelloRefuses(t *testing.T) {
	hello := clientHello(t, "app.acme.example.com")
	big := []byte{22, 3, 1, 0x40, 0, 1, 0x01, 0, 0} // a 64 KiB ClientHello announced
	big = append(big, make([]byte, 0x4000-4)...)
	manyRecords := fragment(append([]byte{22, 3, 1, 0, 0}, append([]byte{1, 0x01, 0, 0}, make([]byte, 0x10000)...)...), 1000)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"oversize hello", big, "larger than"},
		{"oversize across records", manyRecords, "larger than"},
		{"record too long", []byte{22, 3, 1, 0xff, 0xff}, "record length"},
		{"empty record", []byte{22, 3, 1, 0, 0}, "record length"},
		{"not TLS version", []byte{22, 2, 0, 0, 1, 1}, "not TLS"},
		{"not a ClientHello", []byte{22, 3, 1, 0, 4, 2, 0, 0, 0}, "not ClientHello"},
		{"truncated hello", []byte{22, 3, 1, 0, 6, 1, 0, 0, 2, 3, 3}, "truncated"},
		{"connection closed mid-record", hello[:len(hello)-1], "reading record"},
		{"connection closed mid-header", hello[:3], "reading record header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ReadClientHello(bytes.NewReader(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
	raw, _, err := ReadClientHello(strings.NewReader("GET / HTTP/1.1\r\n\r\n"))
	if !errors.Is(err, ErrNotHandshake) || string(raw) != "GET /" {
		t.Fatalf("plain HTTP: raw %q, err %v", raw, err)
	}
}

// TestServerNameMalformed: a server_name extension that crypto/tls would
// refuse is refused here too, not read as "no SNI".
func TestServerNameMalformed(t *testing.T) {
	hello := clientHello(t, "app.acme.example.com")
	body := hello[5+4:]
	i := bytes.Index(body, []byte("app.acme.example.com"))
	// The name's own length is the 2 bytes before it; the list length 5
	// before it; the extension length 7 before it.
	bad := append([]byte{}, body...)
	bad[i-1]++ // host_name longer than the list
	if _, err := ServerName(bad); err == nil {
		t.Fatal("a host_name longer than its list was accepted")
	}
	bad = append([]byte{}, body...)
	bad[i-2], bad[i-1] = 0, 0
	if _, err := ServerName(bad); err == nil {
		t.Fatal("an empty host_name was accepted")
	}
}

func FuzzReadClientHello(f *testing.F) {
	hello := clientHello(f, "app.acme.example.com")
	f.Add(hello)
	f.Add(fragment(hello, 7))
	f.Add(clientHello(f, ""))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, name, err := ReadClientHello(bytes.NewReader(data))
		if !bytes.HasPrefix(data, raw) {
			t.Fatalf("raw is not a prefix of the input")
		}
		if len(raw) > MaxHello+4+5*(MaxHello+4) {
			t.Fatalf("read %d bytes", len(raw))
		}
		if err != nil && name != "" {
			t.Fatalf("a name with an error")
		}
		// Whatever a real parser does with the hello's body, ours must not
		// panic on it either.
		_, _ = ServerName(data)
	})
}

func TestCaddyfileAdapt(t *testing.T) { adapttest.RunDir(t, "testdata/caddyfile_adapt") }

func TestCaddyfileErrors(t *testing.T) {
	adapttest.ExpectError(t, "{\n servers {\n listener_wrappers {\n neo_sni x\n tls\n }\n }\n}\n:9443 {\n}", "wrong argument count")
	adapttest.ExpectError(t, "{\n servers {\n listener_wrappers {\n neo_sni {\n bogus\n }\n tls\n }\n }\n}\n:9443 {\n}", "unknown option")
	adapttest.ExpectError(t, "{\n servers {\n listener_wrappers {\n neo_sni {\n timeout x\n }\n tls\n }\n }\n}\n:9443 {\n}", "timeout")
}
