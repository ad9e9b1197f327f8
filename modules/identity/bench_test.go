package identity

import (
	"testing"
	"time"
)

// BenchmarkValidate compares, in one run, a token's validation from the
// cache (every request after a token's first) with a full verification
// (ES256 signature, the token's first request on this edge) and signing:
//
//	go test -run '^$' -bench Validate -benchmem ./modules/identity
func BenchmarkValidate(b *testing.B) {
	c := &clock{t: time.Now()}
	a := testApp(b, c, newMemKV(0), newMemKV(0), kek(b))
	tok := sign(b, a, "acme", "dev")
	if _, err := a.validate(tok); err != nil {
		b.Fatal(err)
	}
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.validate(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.keys.verify(tok, c.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sign", func(b *testing.B) {
		b.ReportAllocs()
		cl := claimsFor(a, "acme", "dev")
		for b.Loop() {
			if _, err := a.keys.sign(cl); err != nil {
				b.Fatal(err)
			}
		}
	})
}
