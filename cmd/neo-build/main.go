// Command neo-build builds the caddy-neo binary with xcaddy from the build
// manifest xcaddy.json: Caddy at the manifest's version, every plugin at its
// version, and this repository as a local plugin.
//
//	go run ./cmd/neo-build [-manifest xcaddy.json] [-o caddy] [-check]
//
// It sets GONOSUMDB from the manifest for the go commands xcaddy runs. With
// -check it only verifies that xcaddy.json, go.mod, cmd/caddy and the
// Dockerfile agree, and exits non-zero naming each disagreement.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/projectneo/caddy-neo/internal/manifest"
)

func main() {
	path := flag.String("manifest", "xcaddy.json", "the build manifest")
	out := flag.String("o", "caddy", "the binary to write")
	check := flag.Bool("check", false, "only check that xcaddy.json, go.mod, cmd/caddy and the Dockerfile agree")
	flag.Parse()
	if err := run(*path, *out, *check); err != nil {
		fmt.Fprintln(os.Stderr, "neo-build:", err)
		os.Exit(1)
	}
}

func run(path, out string, check bool) error {
	m, err := manifest.Load(path)
	if err != nil {
		return err
	}
	if errs := m.Check(filepath.Dir(path)); len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintln(os.Stderr, "neo-build:", e)
		}
		return fmt.Errorf("%d disagreement(s) between xcaddy.json and the repository", len(errs))
	}
	if check {
		fmt.Println("neo-build: xcaddy.json, go.mod, cmd/caddy/main.go and Dockerfile agree")
		return nil
	}
	if m.GONOSUMDB != "" {
		os.Setenv("GONOSUMDB", m.GONOSUMDB)
	}
	b, err := m.Builder()
	if err != nil {
		return err
	}
	b.TimeoutBuild = 20 * time.Minute
	b.TimeoutGet = 10 * time.Minute
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	return b.Build(context.Background(), abs)
}
