package natshttp

// Protocol version 2 packs the two frames every request has, head and resp,
// into the message payload and sends no NATS headers at all. Version 1 puts
// each control and HTTP field in a NATS header of its own: the client
// library sorts and writes them on one side and parses them into a map of
// fresh strings on the other, and the server scans them, for every message.
// A version 2 frame is one byte string, encoded with appends and decoded
// into the HTTP header with one string allocation for all names and values.
// Version 3 ("compact frames") adds the two frames a stream sends most,
// data and credit, without NATS headers either; cancel, error and probe
// frames, and a data frame that carries trailers, stay as in version 1.
//
//	frame  = "NEO\x02" kind field* 0x00 body
//	kind   = 'h' (head) | 'r' (resp)
//	data   = "NEO\x02" 'd' uvarint(seq ≥ 1) flags body   flags: 0, or 1 (eof)
//	credit = "NEO\x02" 'c' uvarint(credit, 1 to 1024)
//	field  = tag value                     a control field (tags below)
//	       | 'H' name count value{count}   an HTTP header field
//	       | 'T' name count value{count}   an HTTP trailer field (with 'e')
//	name, value = uvarint(length) bytes;   count = uvarint
//
// Control tags and the version 1 header each stands for (values are the
// same strings): 'm' method, 'p' path, 'q' query, 'h' host, 'l' length,
// 'w' window, 't' timeout, 'r' trailer names, 's' status, 'i' inbox,
// 'e' eof, 'c' client address, 'u' scheme, 'b' bind, 'g' upgrade,
// 'f' compact frames. A tag appears at most once.
//
// A gateway answers a request in the version it came in, so edges choose
// (the transport's protocol_version): version 3 by default, a version 2
// head with tag 'f' ("1"), after which both sides send compact data and
// credit frames (a gateway older than version 3 rejects the head, so an
// edge that had its head accepted knows its gateway reads them); version 2
// while gateways older than version 3 remain; version 1 while gateways
// older than version 2 remain. Receivers take either form of every frame.

import (
	"bytes"
	"fmt"
	"net/http"
)

// v2Magic starts every version 2 frame. Version 1 frames always have NATS
// headers, so a message without headers that starts with it is version 2.
var v2Magic = []byte("NEO\x02")

const (
	v2KindHead   = 'h'
	v2KindResp   = 'r'
	v2KindData   = 'd'
	v2KindCredit = 'c'
	// v2FlagEOF marks a compact data frame as the last of its stream.
	v2FlagEOF  = 1
	v2TagHTTP  = 'H'
	v2TagTrail = 'T'
	v2End      = 0
	// maxV2Fields bounds the fields of one frame (a message's size bounds
	// them too; this keeps a decoder's allocation small whatever it is sent).
	maxV2Fields = 4096
)

// v2Ctl lists the control tags in the order of frame.ctl.
var v2Ctl = [...]struct {
	tag  byte
	name string
}{
	{'m', hdrMethod}, {'p', hdrPath}, {'q', hdrQuery}, {'h', hdrHost}, {'l', hdrLength},
	{'w', hdrWindow}, {'t', hdrTimeout}, {'r', hdrTrailer}, {'s', hdrStatus}, {'i', hdrInbox}, {'e', hdrEOF},
	{'c', hdrClient}, {'u', hdrScheme}, {'b', hdrBind}, {'g', hdrUpgrade}, {'f', hdrCompact},
}

// v2CtlByTag maps a tag byte to its index in v2Ctl plus one (0: not a
// control tag).
var v2CtlByTag = func() (t [256]uint8) {
	for i, c := range v2Ctl {
		t[c.tag] = uint8(i + 1)
	}
	return
}()

func v2CtlIndex(name string) int {
	for i, c := range v2Ctl {
		if c.name == name {
			return i
		}
	}
	return -1
}

// appendV2Start begins a version 2 frame of kind v2KindHead or v2KindResp.
func appendV2Start(b []byte, kind byte) []byte {
	return append(append(b, v2Magic...), kind)
}

// compactDataPrefix is the most a compact data frame puts before its body.
const compactDataPrefix = len("NEO\x02") + 1 + 10 + 1

// appendCompactData appends the start of a compact data frame (its body
// follows).
func appendCompactData(b []byte, seq uint64, eof bool) []byte {
	b = appendUvarint(appendV2Start(b, v2KindData), seq)
	if eof {
		return append(b, v2FlagEOF)
	}
	return append(b, 0)
}

// appendCompactCredit appends a compact credit frame.
func appendCompactCredit(b []byte, credit int) []byte {
	return appendUvarint(appendV2Start(b, v2KindCredit), uint64(credit))
}

// parseCompactData decodes a compact data frame (d starts with v2Magic and
// 'd').
func parseCompactData(d []byte) (seq uint64, eof bool, body []byte, err error) {
	i := len(v2Magic) + 1
	seq, n := uvarintAt(d, i)
	if n == 0 || seq == 0 {
		return 0, false, nil, fmt.Errorf("%w: compact data frame without a sequence number", ErrBadFrame)
	}
	i += n
	if i >= len(d) {
		return 0, false, nil, fmt.Errorf("%w: compact data frame without flags", ErrBadFrame)
	}
	switch d[i] {
	case 0:
	case v2FlagEOF:
		eof = true
	default:
		return 0, false, nil, fmt.Errorf("%w: compact data frame flags %#x", ErrBadFrame, d[i])
	}
	return seq, eof, d[i+1:], nil
}

// parseCompactCredit decodes a compact credit frame (d starts with v2Magic
// and 'c').
func parseCompactCredit(d []byte) (int, error) {
	i := len(v2Magic) + 1
	c, n := uvarintAt(d, i)
	if n == 0 || i+n != len(d) || c < 1 || c > maxWindow {
		return 0, fmt.Errorf("%w: compact credit frame", ErrBadFrame)
	}
	return int(c), nil
}

// appendV2Ctl appends the control field of tag.
func appendV2Ctl(b []byte, tag byte, v string) []byte {
	return appendV2String(append(b, tag), v)
}

func appendV2String(b []byte, s string) []byte {
	b = appendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// appendV2Fields appends src's fields under tag (v2TagHTTP or v2TagTrail),
// dropping what putHTTPFields drops.
func appendV2Fields(b []byte, tag byte, src http.Header) []byte {
	conn := connectionNames(src)
	for k, vv := range src {
		ck, keep := framedValues(k, vv, conn)
		if len(keep) == 0 {
			continue
		}
		b = appendV2String(append(b, tag), ck)
		b = appendUvarint(b, uint64(len(keep)))
		for _, v := range keep {
			b = appendV2String(b, v)
		}
	}
	return b
}

// v2FieldsSize is about what appendV2Fields appends for src: a buffer's
// initial capacity.
func v2FieldsSize(src http.Header) int {
	n := 0
	for k, vv := range src {
		n += len(k) + 4
		for _, v := range vv {
			n += len(v) + 2
		}
	}
	return n
}

// isV2 reports whether a message is a version 2 frame.
func isV2(hdrs int, data []byte) bool {
	return hdrs == 0 && bytes.HasPrefix(data, v2Magic)
}

// uvarintAt decodes the uvarint at s[i:]; n is 0 when it is cut short or
// overflows.
func uvarintAt[T string | []byte](s T, i int) (v uint64, n int) {
	for shift := uint(0); i+n < len(s) && shift < 64; shift += 7 {
		c := s[i+n]
		n++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, n
		}
	}
	return 0, 0
}

// parseV2 decodes a version 2 frame. It checks the frame's structure and
// its HTTP fields (as httpFields does); parseFrame and parseReqHead check
// the control values, as for version 1.
func parseV2(d []byte) (*frame, error) {
	if len(d) <= len(v2Magic) {
		return nil, fmt.Errorf("%w: version 2 frame without a kind", ErrBadFrame)
	}
	f := &frame{v2: true}
	switch d[len(v2Magic)] {
	case v2KindData:
		seq, eof, body, err := parseCompactData(d)
		if err != nil {
			return nil, err
		}
		f.kind, f.seq, f.eof, f.data = kindData, seq, eof, body
		return f, nil
	case v2KindCredit:
		c, err := parseCompactCredit(d)
		if err != nil {
			return nil, err
		}
		f.kind, f.credit = kindCredit, c
		return f, nil
	case v2KindHead:
		f.kind = kindHead
	case v2KindResp:
		f.kind = kindResp
	default:
		return nil, fmt.Errorf("%w: version 2 frame of kind %q", ErrBadFrame, d[len(v2Magic)])
	}
	start := len(v2Magic) + 1
	// first pass, over the bytes: structure, the end, and how many values
	// each HTTP field set has
	var nh, nt, fields int
	var seen [len(v2Ctl)]bool
	i := start
	end := -1
	field := func(i int) (int, error) { // skips one length-prefixed string
		l, n := uvarintAt(d, i)
		if n == 0 || l > uint64(len(d)-i-n) {
			return 0, fmt.Errorf("%w: version 2 field cut short", ErrBadFrame)
		}
		return i + n + int(l), nil
	}
	var err error
	for end < 0 {
		if i >= len(d) {
			return nil, fmt.Errorf("%w: version 2 frame without an end", ErrBadFrame)
		}
		if fields++; fields > maxV2Fields {
			return nil, fmt.Errorf("%w: more than %d fields", ErrBadFrame, maxV2Fields)
		}
		tag := d[i]
		i++
		switch {
		case tag == v2End:
			end = i - 1
		case v2CtlByTag[tag] != 0:
			if x := v2CtlByTag[tag] - 1; seen[x] {
				return nil, fmt.Errorf("%w: repeated field %s", ErrBadFrame, v2Ctl[x].name)
			} else {
				seen[x] = true
			}
			if i, err = field(i); err != nil {
				return nil, err
			}
		case tag == v2TagHTTP || tag == v2TagTrail:
			if i, err = field(i); err != nil {
				return nil, err
			}
			c, n := uvarintAt(d, i)
			if n == 0 || c == 0 || c > uint64(len(d)-i-n) {
				return nil, fmt.Errorf("%w: bad value count", ErrBadFrame)
			}
			i += n
			for range c {
				if i, err = field(i); err != nil {
					return nil, err
				}
			}
			if fields += int(c); fields > maxV2Fields {
				return nil, fmt.Errorf("%w: more than %d fields", ErrBadFrame, maxV2Fields)
			}
			if tag == v2TagHTTP {
				nh += int(c)
			} else {
				nt += int(c)
			}
		default:
			return nil, fmt.Errorf("%w: unknown version 2 field %q", ErrBadFrame, tag)
		}
	}
	f.data = d[end+1:]
	// second pass, over one string of all fields: the values
	s := string(d[start:end])
	vals := make([]string, nh+nt)
	used := 0
	if nh > 0 {
		f.hdr = make(http.Header)
	}
	if nt > 0 {
		f.tr = make(http.Header)
	}
	str := func(i int) (string, int) { // the string at s[i:] and what follows it
		l, n := uvarintAt(s, i)
		return s[i+n : i+n+int(l)], i + n + int(l)
	}
	for i := 0; i < len(s); {
		tag := s[i]
		i++
		if x := v2CtlByTag[tag]; x != 0 {
			f.ctl[x-1], i = str(i)
			continue
		}
		var name string
		name, i = str(i)
		if !validHTTPToken(name) {
			return nil, fmt.Errorf("%w: field name %q", ErrBadFrame, name)
		}
		c, n := uvarintAt(s, i)
		i += n
		first := used
		for range c {
			vals[used], i = str(i)
			if !validFieldValue(vals[used]) {
				return nil, fmt.Errorf("%w: value of field %q", ErrBadFrame, name)
			}
			used++
		}
		h := f.hdr
		if tag == v2TagTrail {
			h = f.tr
		}
		ck := http.CanonicalHeaderKey(name)
		if prev, ok := h[ck]; ok {
			h[ck] = append(prev[:len(prev):len(prev)], vals[first:used]...)
			continue
		}
		h[ck] = vals[first:used:used]
	}
	return f, nil
}
