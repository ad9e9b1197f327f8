package wafcontent

import (
	"encoding/base64"
	"slices"
	"strings"
	"testing"
)

func TestGraphQLArguments(t *testing.T) {
	for _, c := range []struct {
		doc  string
		args []string
		ok   bool
	}{
		{"query GetUser($id: ID!) { user(id: $id) { id name orders(first: 10) { edges { node { id } } } } }", nil, true},
		{`mutation M($input: CreateInput!) { create(input: $input, note: "l'été \u00e9 \"q\"") { id } }`, []string{`l'été é "q"`}, true},
		{"{ a(x: \"\"\"block\n  text \\\"\"\" here\"\"\") }", []string{"block\n  text \"\"\" here"}, true},
		{"# a comment with ' or 1=1\n{ a }", []string{"a comment with ' or 1=1"}, true},
		{"fragment F on User { id } query { ...F ... on User @include(if: true) { name } }", nil, true},
		{"subscription S { changed(ids: [1, 2.5e3, -0]) { id } }", nil, true},
		{"{ a(x: 1e) }", nil, false},
		{"{ a(x: 01) }", nil, false},
		{"query union select password from users", nil, false},
		{"select * from users", nil, false},
		{"{ a } ' or 1=1 --", nil, false},
		{"{ a(x: \"unterminated) }", nil, false},
		{"{ a(x: \"bad \\q escape\") }", nil, false},
		{"{ a }}", nil, false},
		{"{ a(x: $) }", nil, false},
		{"query Q { a }; DROP TABLE x", nil, false},
		{"", nil, false},
		{"query", nil, false},
		{"fragment F { id }", nil, false},
	} {
		args, ok := graphQLArguments(c.doc)
		if ok != c.ok || ok && !slices.Equal(args, c.args) {
			t.Errorf("%q: %q %v, want %q %v", c.doc, args, ok, c.args, c.ok)
		}
	}
}

// FuzzGraphQLArguments: never panics; what it returns as data occurs in
// the document (a literal's decoded text may differ only by escapes, so
// only escape-free documents are checked), and every accepted document
// starts like an executable definition.
func FuzzGraphQLArguments(f *testing.F) {
	for _, s := range []string{"{ a }", `query Q($x: Int = 1) { a(b: "c", d: [1, {e: "f"}]) @skip(if: $x) { ...G } }`, "\"\"\"x\"\"\"", "#c\n{a}", "{ a(x: \"\\u{1F600}\") }"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		args, ok := graphQLArguments(doc)
		if !ok {
			return
		}
		d := strings.TrimLeft(strings.TrimPrefix(doc, "\ufeff"), " \t\r\n,")
		for d != "" && d[0] == '#' {
			i := strings.IndexAny(d, "\r\n")
			if i < 0 {
				d = ""
				break
			}
			d = strings.TrimLeft(d[i:], " \t\r\n,")
		}
		if !strings.HasPrefix(d, "{") && !strings.HasPrefix(d, "query") && !strings.HasPrefix(d, "mutation") &&
			!strings.HasPrefix(d, "subscription") && !strings.HasPrefix(d, "fragment") {
			t.Fatalf("accepted %q", doc)
		}
		if !strings.Contains(doc, `\`) {
			for _, a := range args {
				if !strings.Contains(doc, a) {
					t.Fatalf("%q: returned %q, not in the document", doc, a)
				}
			}
		}
	})
}

func TestDecodeDataURL(t *testing.T) {
	png := "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, c := range []struct {
		in, out string
		ok      bool
	}{
		{"data:image/png;base64," + b64(png), "image/png", true},
		{"DATA:Image/PNG;base64," + b64(png), "image/png", true},
		{"data:image/png;base64," + b64("GIF89a not a png"), "", false},
		{"data:image/jpeg;base64," + b64(png), "", false},
		{"data:image/png;base64," + b64(png) + "!", "", false},
		{"data:image/png," + png, "", false},
		{"data:text/plain;base64," + b64("<?php system($_GET['c']); ?>"), "<?php system($_GET['c']); ?>", true},
		{"data:text/csv;charset=utf-8;base64," + b64("a,b\n1,2"), "a,b\n1,2", true},
		{"data:image/svg+xml;base64," + b64("<svg onload=alert(1)>"), "<svg onload=alert(1)>", true},
		{"data:text/plain;base64," + b64("\xff\xfe"), "", false},
		{"data:application/octet-stream;base64," + b64("x"), "", false},
		{"data:text/html,<script>alert(1)</script>", "", false},
		{"data://text/plain;base64," + b64("x"), "", false},
		{"see data:image/png;base64," + b64(png), "", false},
	} {
		out, ok := decodeDataURL(c.in)
		if ok != c.ok || out != c.out {
			t.Errorf("%q: %q %v, want %q %v", c.in, out, ok, c.out, c.ok)
		}
	}
	html := `<p>x</p><img src="data:image/png;base64,` + b64(png) + `"><img src="data:image/gif;base64,` + b64(png) + `">`
	got, ok := replaceEmbeddedImages(html)
	if want := `<p>x</p><img src="image/png"><img src="data:image/gif;base64,` + b64(png) + `">`; !ok || got != want {
		t.Errorf("embedded: %q %v, want %q", got, ok, want)
	}
}

// FuzzDataURL: the data: URL readers never panic; an image is only ever
// replaced by its media type, text only by valid UTF-8.
func FuzzDataURL(f *testing.F) {
	f.Add("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAE=")
	f.Add("data:text/plain;base64,aGVsbG8=")
	f.Add("x data:image/gif;base64,R0lGODlhAQABAAAAACw= y")
	f.Fuzz(func(t *testing.T, v string) {
		if out, ok := decodeDataURL(v); ok {
			if _, raster := rasterMagic[out]; !raster && !strings.Contains(strings.ToLower(v), ";base64,") {
				t.Fatalf("%q decoded to %q without base64", v, out)
			}
		}
		if out, ok := replaceEmbeddedImages(v); ok && len(out) >= len(v) {
			t.Fatalf("%q: replacement %q is not shorter", v, out)
		}
	})
}
