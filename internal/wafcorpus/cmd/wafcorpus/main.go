// Command wafcorpus writes the benign WAF corpus (internal/wafcorpus) as
// JSON lines, one request per line, for inspection or for other tools.
//
//	go run ./internal/wafcorpus/cmd/wafcorpus -seed 1 > benign.jsonl
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"os"

	"github.com/projectneo/caddy-neo/internal/wafcorpus"
)

func main() {
	seed := flag.Uint64("seed", 1, "corpus seed")
	flag.Parse()
	w := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, r := range wafcorpus.Benign(*seed) {
		if err := enc.Encode(r); err != nil {
			panic(err)
		}
	}
	if err := w.Flush(); err != nil {
		panic(err)
	}
}
