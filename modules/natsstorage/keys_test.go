package natsstorage

import (
	"regexp"
	"strings"
	"testing"
)

// The KV key rules nats.go enforces (jetstream keyValid).
var kvKeyRe = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

func validKVKey(k string) bool {
	return k != "" && k[0] != '.' && k[len(k)-1] != '.' && !strings.Contains(k, "..") && kvKeyRe.MatchString(k)
}

func TestEncodeKey(t *testing.T) {
	for _, c := range []struct{ key, enc string }{
		{"certificates/acme/example.com/example.com.crt", "certificates.acme.example=2Ecom.example=2Ecom=2Ecrt"},
		{"/a//b/", "a.b"},
		{"wildcard_.x", "wildcard_=2Ex"},
		{"a=b*c>d e", "a=3Db=2Ac=3Ed=20e"},
		{"ü", "=C3=BC"},
	} {
		got, err := encodeKey(c.key)
		if err != nil || got != c.enc {
			t.Errorf("encodeKey(%q) = %q, %v; want %q", c.key, got, err, c.enc)
		}
	}
	for _, k := range []string{"", "/", "//"} {
		if _, err := encodeKey(k); err == nil {
			t.Errorf("encodeKey(%q) succeeded", k)
		}
	}
	for _, k := range []string{"", ".a", "a.", "a..b", "a=2", "a=zz", "a=2F", "a=41", "a=2e", "a*b"} {
		if _, err := decodeKey(k); err == nil {
			t.Errorf("decodeKey(%q) succeeded", k)
		}
	}
}

// FuzzKeyEncoding: every key encodes to a valid KV key that decodes back to
// the key (with empty segments dropped), and encoding keeps segment prefixes.
func FuzzKeyEncoding(f *testing.F) {
	for _, s := range []string{"certificates/acme/example.com/example.com.crt", "a", "/x//y/", "=2E", "ü/ß", "a.b/c", "*", ">", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		enc, err := encodeKey(key)
		if canonicalKey(key) == "" {
			if err == nil {
				t.Fatalf("encodeKey(%q) of an empty key succeeded", key)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if !validKVKey(enc) {
			t.Fatalf("encodeKey(%q) = %q: not a valid KV key", key, enc)
		}
		dec, err := decodeKey(enc)
		if err != nil || dec != canonicalKey(key) {
			t.Fatalf("decodeKey(encodeKey(%q)) = %q, %v; want %q", key, dec, err, canonicalKey(key))
		}
		// the encoding of a key's parent directory is a token prefix of its own
		if i := strings.LastIndex(dec, "/"); i > 0 {
			parent, _ := encodeKey(dec[:i])
			if !strings.HasPrefix(enc, parent+".") {
				t.Fatalf("encodeKey(%q) = %q does not start with its parent's %q", key, enc, parent+".")
			}
		}
		// decodeKey accepts only what encodeKey writes: re-encoding is the identity
		if re, _ := encodeKey(dec); re != enc {
			t.Fatalf("re-encoding %q gave %q, want %q", dec, re, enc)
		}
	})
}
