package wafcontent

import (
	"bytes"
	"encoding/base64"
	"regexp"
	"strings"
	"unicode/utf8"
)

// data: URLs (RFC 2397) in request arguments. As text, a data: URL is
// base64 letters behind a `data:` scheme; the CRS reads it as text and sees
// command names in the letters (932235, 932260), a PHP data:// wrapper
// (934170) and an XSS vector (941130, 941170), so every JSON body carrying
// an avatar or a pasted screenshot is blocked. What the app receives is the
// decoded content; that is what is inspected instead:
//
//   - a raster image (PNG, JPEG, GIF, WebP, AVIF, BMP, ICO) whose base64
//     decodes to that format's signature becomes its media type
//     ("image/png"): an image's bytes carry no text to match;
//   - a text type (text/*, application/json, application/xml,
//     image/svg+xml) whose base64 decodes to UTF-8 becomes the decoded text,
//     which every rule then inspects (a data:text/plain;base64 PHP payload
//     is caught as PHP, an SVG with a script as XSS);
//   - anything else (other types, not base64, undecodable, not UTF-8) is
//     left as it is, as the CRS sees it without this handling.
//
// Raster images inside a longer value (an <img src="data:..."> in rich
// text) are replaced the same way, in place.

// rasterMagic is each raster type's signature.
var rasterMagic = map[string]func([]byte) bool{
	"image/png":  func(b []byte) bool { return bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) },
	"image/jpeg": func(b []byte) bool { return bytes.HasPrefix(b, []byte{0xff, 0xd8, 0xff}) },
	"image/jpg":  func(b []byte) bool { return bytes.HasPrefix(b, []byte{0xff, 0xd8, 0xff}) },
	"image/gif": func(b []byte) bool {
		return bytes.HasPrefix(b, []byte("GIF87a")) || bytes.HasPrefix(b, []byte("GIF89a"))
	},
	"image/webp": func(b []byte) bool { return len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP" },
	"image/avif": func(b []byte) bool {
		return len(b) >= 12 && string(b[4:8]) == "ftyp" && (string(b[8:12]) == "avif" || string(b[8:12]) == "avis")
	},
	"image/bmp":                func(b []byte) bool { return bytes.HasPrefix(b, []byte("BM")) },
	"image/x-icon":             func(b []byte) bool { return bytes.HasPrefix(b, []byte{0, 0, 1, 0}) },
	"image/vnd.microsoft.icon": func(b []byte) bool { return bytes.HasPrefix(b, []byte{0, 0, 1, 0}) },
}

var mediaType = regexp.MustCompile(`^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$`)

// textTypes are decoded and inspected as text.
func textType(mt string) bool {
	switch mt {
	case "application/json", "application/xml", "image/svg+xml":
		return true
	}
	return strings.HasPrefix(mt, "text/")
}

// decodeDataURL returns what is inspected in place of a value that is a
// data: URL; ok is false when the value is left as it is.
func decodeDataURL(v string) (string, bool) {
	if len(v) < 6 || !strings.EqualFold(v[:5], "data:") {
		return "", false
	}
	head, payload, found := strings.Cut(v[5:], ",")
	if !found {
		return "", false
	}
	params := strings.Split(head, ";")
	if len(params) < 2 || !strings.EqualFold(strings.TrimSpace(params[len(params)-1]), "base64") {
		return "", false
	}
	mt := strings.ToLower(strings.TrimSpace(params[0]))
	if !mediaType.MatchString(mt) || payload == "" {
		return "", false
	}
	if magic, ok := rasterMagic[mt]; ok {
		if b, ok := decodeBase64Prefix(payload, 16); ok && magic(b) && validBase64(payload) {
			return mt, true
		}
		return "", false
	}
	if !textType(mt) {
		return "", false
	}
	b, err := strictBase64(payload)
	if err != nil || !utf8.Valid(b) {
		return "", false
	}
	return string(b), true
}

// replaceEmbeddedImages replaces the raster-image data: URLs inside v by
// their media types; ok is false when there is none.
func replaceEmbeddedImages(v string) (string, bool) {
	var b strings.Builder
	rest, changed := v, false
	for {
		i := indexFold(rest, "data:image/")
		if i < 0 {
			break
		}
		// the URL runs to the first byte outside the base64 alphabet
		j := i + len("data:image/")
		semi := strings.Index(rest[j:], ";base64,")
		if semi < 0 || semi > 32 {
			b.WriteString(rest[:j])
			rest = rest[j:]
			continue
		}
		mt := strings.ToLower(rest[i+5 : j+semi])
		start := j + semi + len(";base64,")
		end := start
		for end < len(rest) && isBase64Byte(rest[end]) {
			end++
		}
		payload := rest[start:end]
		magic, known := rasterMagic[mt]
		if pre, ok := decodeBase64Prefix(payload, 16); known && ok && magic(pre) && validBase64(payload) {
			b.WriteString(rest[:i])
			b.WriteString(mt)
			changed = true
		} else {
			b.WriteString(rest[:end])
		}
		rest = rest[end:]
	}
	if !changed {
		return "", false
	}
	b.WriteString(rest)
	return b.String(), true
}

func indexFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

func isBase64Byte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '='
}

// validBase64 reports whether s is standard base64 (padding optional).
func validBase64(s string) bool {
	if s == "" {
		return false
	}
	body := strings.TrimRight(s, "=")
	if len(s)-len(body) > 2 {
		return false
	}
	if len(s) != len(body) && len(s)%4 != 0 {
		return false
	}
	if len(body)%4 == 1 {
		return false
	}
	for i := 0; i < len(body); i++ {
		if !isBase64Byte(body[i]) || body[i] == '=' {
			return false
		}
	}
	return true
}

func strictBase64(s string) ([]byte, error) {
	if strings.HasSuffix(s, "=") || len(s)%4 == 0 {
		return base64.StdEncoding.Strict().DecodeString(s)
	}
	return base64.RawStdEncoding.Strict().DecodeString(s)
}

// decodeBase64Prefix decodes the first n bytes (at most) of s.
func decodeBase64Prefix(s string, n int) ([]byte, bool) {
	k := (n + 2) / 3 * 4
	if k > len(s) {
		k = len(s) &^ 3
		if k == 0 {
			k = len(s)
		}
	}
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s[:k], "="))
	if err != nil && len(b) == 0 {
		return nil, false
	}
	return b, true
}
