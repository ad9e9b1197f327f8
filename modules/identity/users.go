package identity

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/projectneo/caddy-neo/modules/neo"
)

// dummyHash is compared against when a user does not exist, so that a
// sign-in for an unknown user costs what one for a known user costs.
func dummyHash() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte(randomID(16)), neo.BcryptCost)
	return h
}

var errBadCredentials = errors.New("wrong user name or password")

// checkPassword verifies a built-in user's password. Exactly one password
// hash comparison is made whether or not the user exists, so neither the
// answer nor its time tells whether a user name exists.
func (a *App) checkPassword(u *neo.UserConfig, password string) error {
	ok := false
	switch {
	case u == nil || u.Disabled:
		_ = bcrypt.CompareHashAndPassword(a.dummyPW, []byte(password))
	case u.PasswordHash != "":
		ok = verifyHash(u.PasswordHash, password)
	default:
		// A plain-text password of the Caddy config (local topology).
		_ = bcrypt.CompareHashAndPassword(a.dummyPW, []byte(password))
		x, y := sha256.Sum256([]byte(u.Password)), sha256.Sum256([]byte(password))
		ok = subtle.ConstantTimeCompare(x[:], y[:]) == 1
	}
	if !ok {
		return errBadCredentials
	}
	return nil
}

func verifyHash(hash, password string) bool {
	if strings.HasPrefix(hash, "$argon2id$") {
		return verifyArgon2id(hash, password)
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}

// verifyArgon2id checks a PHC-format argon2id hash:
// $argon2id$v=19$m=<KiB>,t=<iterations>,p=<threads>$<salt>$<hash>.
func verifyArgon2id(hash, password string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[2] != "v=19" {
		return false
	}
	var m, t, p uint64
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return false
		}
		switch k {
		case "m":
			m = n
		case "t":
			t = n
		case "p":
			p = n
		}
	}
	// Bounds keep a hostile hash from costing the edge a lot of memory/time.
	if m < 8 || m > 256*1024 || t < 1 || t > 10 || p < 1 || p > 16 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) < 16 || len(want) > 64 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, uint32(t), uint32(m), uint8(p), uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// userFP fingerprints a built-in user's credentials for its sessions.
func userFP(u *neo.UserConfig) string {
	h := u.PasswordHash
	if h == "" {
		h = u.Password
	}
	sum := sha256.Sum256([]byte("neo-user-fp\x00" + h))
	return base64.RawURLEncoding.EncodeToString(sum[:9])
}
