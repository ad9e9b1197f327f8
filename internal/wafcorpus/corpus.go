// Package wafcorpus generates the benign request corpus the edge WAF's false
// positive rate is measured on: what apps on the platform send (REST JSON
// with free text in many languages, GraphQL queries and mutations with
// variables, data: URLs and base64 blobs, JWTs in bodies, Markdown and
// HTML-ish rich text, CSV and image uploads, searches with punctuation).
// The corpus is a function of the seed: Benign(seed) returns the same
// requests every time (on one Go version: the image encoders are the
// standard library's).
//
//	go run ./internal/wafcorpus/cmd/wafcorpus -seed 1 > benign.jsonl
package wafcorpus

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// Request is one corpus request. Target is the path and query, relative to
// an app (the harness puts the app's prefix and the host in front).
type Request struct {
	// Kind is the category: rest_json, graphql, data_url, base64_blob, jwt,
	// rich_text, upload, search.
	Kind    string      `json:"kind"`
	Method  string      `json:"method"`
	Target  string      `json:"target"`
	Headers [][2]string `json:"headers,omitempty"`
	Body    []byte      `json:"body,omitempty"`
}

// Header returns the value of the first header named name (any case).
func (r Request) Header(name string) string {
	for _, h := range r.Headers {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}

// Counts is the number of requests of each kind Benign generates.
var Counts = []struct {
	Kind string
	N    int
}{
	{"rest_json", 300},
	{"graphql", 220},
	{"data_url", 90},
	{"base64_blob", 50},
	{"jwt", 70},
	{"rich_text", 150},
	{"upload", 80},
	{"search", 240},
}

// Benign returns the benign corpus for seed.
func Benign(seed uint64) []Request {
	g := &gen{rng: rand.New(rand.NewPCG(seed, 0x6e656f))}
	var out []Request
	for _, c := range Counts {
		for i := 0; i < c.N; i++ {
			r := g.make(c.Kind, i)
			r.Kind = c.Kind
			out = append(out, r)
		}
	}
	return out
}

type gen struct {
	rng *rand.Rand
}

func (g *gen) pick(xs []string) string { return xs[g.rng.IntN(len(xs))] }

func (g *gen) make(kind string, i int) Request {
	switch kind {
	case "rest_json":
		return g.restJSON(i)
	case "graphql":
		return g.graphQL(i)
	case "data_url":
		return g.dataURL(i)
	case "base64_blob":
		return g.base64Blob(i)
	case "jwt":
		return g.jwt(i)
	case "rich_text":
		return g.richText(i)
	case "upload":
		return g.upload(i)
	case "search":
		return g.search(i)
	}
	panic("unknown kind " + kind)
}

// browserHeaders are the headers of a browser or app client.
func (g *gen) headers(accept string) [][2]string {
	h := [][2]string{
		{"User-Agent", g.pick(userAgents)},
		{"Accept", accept},
		{"Accept-Language", g.pick(acceptLanguages)},
	}
	if g.rng.IntN(3) == 0 {
		h = append(h, [2]string{"Cookie", fmt.Sprintf("neo_session=%s; theme=dark; consent=%d", g.token(32), g.rng.IntN(2))})
	}
	if g.rng.IntN(3) == 0 {
		h = append(h, [2]string{"Referer", fmt.Sprintf("https://acme.apps.example.com/orders/list?page=%d&sort=-created_at", 1+g.rng.IntN(9))})
	}
	if g.rng.IntN(4) == 0 {
		h = append(h, [2]string{"Authorization", "Bearer " + g.jwtToken()})
	}
	return h
}

func (g *gen) jsonRequest(kind, method, target string, body []byte) Request {
	h := append(g.headers("application/json"), [2]string{"Content-Type", "application/json"})
	return Request{Method: method, Target: target, Headers: h, Body: body}
}

// token returns n random URL-safe characters.
func (g *gen) token(n int) string {
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	b := make([]byte, n)
	for i := range b {
		b[i] = alpha[g.rng.IntN(len(alpha))]
	}
	return string(b)
}

func (g *gen) text() string {
	lang := g.pick(languages)
	return g.pick(sentences[lang])
}

func (g *gen) name() string { return g.pick(firstNames) + " " + g.pick(lastNames) }

func (g *gen) email() string {
	users := []string{"jane.doe", "j.smith", "maria+orders", "o.brien", "support", "k.tanaka", "li.wei", "a_nowak", "first.last"}
	domains := []string{"example.com", "acme.example", "mail.example.org", "example.co.uk", "firma.example.de"}
	return g.pick(users) + "@" + g.pick(domains)
}

func (g *gen) date() string {
	return fmt.Sprintf("2024-%02d-%02dT%02d:%02d:%02dZ", 1+g.rng.IntN(12), 1+g.rng.IntN(28), g.rng.IntN(24), g.rng.IntN(60), g.rng.IntN(60))
}

func (g *gen) uuid() string {
	b := make([]byte, 16)
	for i := range b {
		b[i] = byte(g.rng.IntN(256))
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
