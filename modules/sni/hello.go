package sni

import (
	"errors"
	"fmt"
	"io"
)

// MaxHello is the largest ClientHello handshake message the wrapper reads
// (post-quantum key shares make real ones about 1.8 KiB; Go's own limit for
// a handshake message is 64 KiB, browsers stay far below 16 KiB).
const MaxHello = 16 << 10

const (
	recordHandshake   = 22
	handshakeHello    = 1
	extServerName     = 0
	maxRecordPayload  = 16384 + 256 // TLSCiphertext allowance; a ClientHello record is plaintext
	recordHeaderBytes = 5
)

// ErrNotHandshake is returned when the first record is not a TLS handshake
// record (plain HTTP on the TLS port, for example): the bytes are passed on
// to crypto/tls, which answers them itself.
var ErrNotHandshake = errors.New("first record is not a TLS handshake")

// ReadClientHello reads TLS records from r until it has a whole ClientHello
// handshake message (which may be split across records, and each record
// across reads) and returns every byte read (to be replayed to crypto/tls)
// and the server name of the server_name extension ("" without SNI). It
// reads at most MaxHello bytes of handshake payload plus record headers.
// With ErrNotHandshake, raw holds the bytes read so far.
func ReadClientHello(r io.Reader) (raw []byte, serverName string, err error) {
	raw = make([]byte, 0, 1024)
	var hs []byte
	for {
		start := len(raw)
		raw = append(raw, make([]byte, recordHeaderBytes)...)
		if _, err := io.ReadFull(r, raw[start:]); err != nil {
			return raw[:start], "", fmt.Errorf("reading record header: %w", err)
		}
		h := raw[start:]
		if h[0] != recordHandshake {
			return raw, "", ErrNotHandshake
		}
		if h[1] != 3 {
			return raw, "", fmt.Errorf("record version %d.%d is not TLS", h[1], h[2])
		}
		n := int(h[3])<<8 | int(h[4])
		if n == 0 || n > maxRecordPayload {
			return raw, "", fmt.Errorf("handshake record length %d", n)
		}
		if len(hs)+n > MaxHello+4 {
			return raw, "", fmt.Errorf("ClientHello larger than %d bytes", MaxHello)
		}
		start = len(raw)
		raw = append(raw, make([]byte, n)...)
		if _, err := io.ReadFull(r, raw[start:]); err != nil {
			return raw[:start], "", fmt.Errorf("reading record: %w", err)
		}
		hs = append(hs, raw[start:]...)
		if len(hs) < 4 {
			continue
		}
		if hs[0] != handshakeHello {
			return raw, "", fmt.Errorf("first handshake message is type %d, not ClientHello", hs[0])
		}
		m := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
		if m > MaxHello {
			return raw, "", fmt.Errorf("ClientHello of %d bytes is larger than %d", m, MaxHello)
		}
		if len(hs) < 4+m {
			continue
		}
		name, err := ServerName(hs[4 : 4+m])
		return raw, name, err
	}
}

// ServerName parses the body of a ClientHello handshake message (after the
// 4-byte handshake header) and returns the host_name of its server_name
// extension, "" when it has none.
func ServerName(b []byte) (string, error) {
	p := parser{b: b}
	p.skip(2 + 32)       // legacy_version, random
	p.skip(int(p.u8()))  // legacy_session_id
	p.skip(int(p.u16())) // cipher_suites
	p.skip(int(p.u8()))  // legacy_compression_methods
	if p.err != nil {
		return "", p.err
	}
	if len(p.b) == 0 {
		return "", nil // no extensions
	}
	exts := parser{b: p.bytes(int(p.u16()))}
	if p.err != nil {
		return "", p.err
	}
	if len(p.b) != 0 {
		return "", errors.New("trailing bytes after the extensions")
	}
	name, found := "", false
	for len(exts.b) > 0 && exts.err == nil {
		typ := exts.u16()
		body := exts.bytes(int(exts.u16()))
		if exts.err != nil || typ != extServerName {
			continue
		}
		if found {
			return "", errors.New("duplicate server_name extension")
		}
		found = true
		sn := parser{b: body}
		list := parser{b: sn.bytes(int(sn.u16()))}
		if sn.err != nil || len(sn.b) != 0 {
			return "", errors.New("malformed server_name extension")
		}
		for len(list.b) > 0 && list.err == nil {
			nt := list.u8()
			v := list.bytes(int(list.u16()))
			if list.err == nil && nt == 0 {
				if name != "" {
					return "", errors.New("more than one host_name in server_name")
				}
				if len(v) == 0 {
					return "", errors.New("empty host_name in server_name")
				}
				name = string(v)
			}
		}
		if list.err != nil {
			return "", errors.New("malformed server_name list")
		}
	}
	if exts.err != nil {
		return "", exts.err
	}
	return name, nil
}

type parser struct {
	b   []byte
	err error
}

var errShort = errors.New("truncated ClientHello")

func (p *parser) bytes(n int) []byte {
	if p.err != nil {
		return nil
	}
	if n > len(p.b) {
		p.err = errShort
		p.b = nil
		return nil
	}
	v := p.b[:n]
	p.b = p.b[n:]
	return v
}

func (p *parser) skip(n int) { p.bytes(n) }

func (p *parser) u8() uint8 {
	v := p.bytes(1)
	if v == nil {
		return 0
	}
	return v[0]
}

func (p *parser) u16() uint16 {
	v := p.bytes(2)
	if v == nil {
		return 0
	}
	return uint16(v[0])<<8 | uint16(v[1])
}
