package identity

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// randomID returns n random bytes, base64url-encoded without padding.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func deriveKey(secret []byte, info string) []byte {
	k, _ := hkdf.Key(sha256.New, secret, nil, info, 32)
	return k
}
