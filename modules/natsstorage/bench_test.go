package natsstorage

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// BenchmarkStorage compares, side by side, the NATS storage (a real
// nats-server with JetStream on loopback, file-backed) with Caddy's default
// file storage, for what certmagic does on a handshake that misses its cache
// (Load of a 4 KiB certificate), on issuance (Store) and around it
// (Lock+Unlock). Run: go test -run XXX -bench Storage ./modules/natsstorage
func BenchmarkStorage(b *testing.B) {
	s := startJetStream(b)
	ctx := context.Background()
	stores := []struct {
		name string
		st   certmagic.Storage
	}{
		{"file", &certmagic.FileStorage{Path: b.TempDir()}},
		{"nats", newEdge(b, s, Settings{}).KV},
	}
	value := make([]byte, 4096)
	rand.Read(value)
	ops := []struct {
		name string
		run  func(st certmagic.Storage, i int) error
	}{
		{"store", func(st certmagic.Storage, i int) error {
			return st.Store(ctx, fmt.Sprintf("certificates/local/n%d/n%d.crt", i%64, i%64), value)
		}},
		{"load", func(st certmagic.Storage, i int) error {
			_, err := st.Load(ctx, fmt.Sprintf("certificates/local/n%d/n%d.crt", i%64, i%64))
			return err
		}},
		{"lock_unlock", func(st certmagic.Storage, i int) error {
			name := fmt.Sprintf("issue_cert_n%d", i%64)
			if err := st.Lock(ctx, name); err != nil {
				return err
			}
			return st.Unlock(ctx, name)
		}},
	}
	perOp := map[string]map[string]time.Duration{}
	for _, op := range ops {
		perOp[op.name] = map[string]time.Duration{}
		for _, sc := range stores {
			for i := 0; i < 64; i++ { // load needs the keys
				if err := sc.st.Store(ctx, fmt.Sprintf("certificates/local/n%d/n%d.crt", i, i), value); err != nil {
					b.Fatal(err)
				}
			}
			b.Run(op.name+"/"+sc.name, func(b *testing.B) {
				start := time.Now()
				for i := 0; i < b.N; i++ {
					if err := op.run(sc.st, i); err != nil {
						b.Fatal(err)
					}
				}
				perOp[op.name][sc.name] = time.Since(start) / time.Duration(b.N)
			})
		}
	}
	for _, op := range ops {
		f, n := perOp[op.name]["file"], perOp[op.name]["nats"]
		if f > 0 {
			b.Logf("%s: nats %v, file %v per op: nats/file %.1f×", op.name, n, f, float64(n)/float64(f))
		}
	}
}
