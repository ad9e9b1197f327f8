package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// docTemplate is the ## headings of every capability page of docs/, in
// order; "Tests" may follow them.
var docTemplate = []string{"What it does", "Caddyfile", "JSON", "Admin API", "Metrics", "Limits"}

const docTemplateOptional = "Tests"

// docNoTemplate lists the pages of docs/ that are not capability pages
// and so keep a layout of their own.
var docNoTemplate = map[string]string{
	"benchmarks.md":    "the numbers of every capability, with their commands",
	"nats-protocol.md": "design note: the HTTP-over-NATS protocol",
	"wafaccel-skip.md": "design note: how neo_waf_accel skips rules",
}

// TestDocTemplate holds docs/ to one page per capability in one template
// (docTemplate) and every relative link of README.md and docs/*.md to an
// existing file and, with a #fragment, to an existing heading of it.
func TestDocTemplate(t *testing.T) {
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		base := filepath.Base(f)
		seen[base] = true
		if _, ok := docNoTemplate[base]; ok {
			continue
		}
		doc := parseDoc(t, f)
		for _, p := range templateProblems(doc.headings) {
			t.Errorf("%s: %s", f, p)
		}
	}
	for name := range docNoTemplate {
		if !seen[name] {
			t.Errorf("docNoTemplate lists docs/%s, which does not exist", name)
		}
	}
	docs := map[string]*mdDoc{}
	load := func(path string) (*mdDoc, error) {
		if d, ok := docs[path]; ok {
			return d, nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		d := parseMarkdown(src)
		docs[path] = d
		return d, nil
	}
	for _, f := range append(files, "../../README.md") {
		for _, p := range linkProblems(f, parseDoc(t, f).links, load) {
			t.Error(p)
		}
	}
}

// TestDocTemplateChecks shows that the checks of TestDocTemplate find a page
// out of template and a broken link.
func TestDocTemplateChecks(t *testing.T) {
	good := "# T\n\n## What it does\n\n### Sub: `x.y` (z)\n\n```sh\n# not a heading\n## Caddyfile\n```\n\n" +
		"## Caddyfile\n## JSON\n## Admin API\n## Metrics\n## Limits\n## Tests\n"
	if p := templateProblems(parseMarkdown([]byte(good)).headings); len(p) != 0 {
		t.Errorf("a page in template: %v", p)
	}
	for name, page := range map[string]string{
		"missing heading": "# T\n## What it does\n## Caddyfile\n## Admin API\n## Metrics\n## Limits\n",
		"out of order":    "# T\n## What it does\n## JSON\n## Caddyfile\n## Admin API\n## Metrics\n## Limits\n",
		"extra heading":   "# T\n## What it does\n## Configuration\n## Caddyfile\n## JSON\n## Admin API\n## Metrics\n## Limits\n",
		"after Tests":     "# T\n## What it does\n## Caddyfile\n## JSON\n## Admin API\n## Metrics\n## Limits\n## Tests\n## Numbers\n",
		"no title":        "## What it does\n## Caddyfile\n## JSON\n## Admin API\n## Metrics\n## Limits\n",
		"two titles":      "# T\n# U\n## What it does\n## Caddyfile\n## JSON\n## Admin API\n## Metrics\n## Limits\n",
	} {
		if p := templateProblems(parseMarkdown([]byte(page)).headings); len(p) == 0 {
			t.Errorf("%s: not reported", name)
		}
	}

	dir := t.TempDir()
	target := "# Page\n\n## What it does\n\n### State: O(1) bytes per key, bounded per zone\n\n### Canonical host: `{neo.rate_limit.host}`\n\n## Limits\n\n## Limits\n"
	if err := os.WriteFile(filepath.Join(dir, "page.md"), []byte(target), 0o644); err != nil {
		t.Fatal(err)
	}
	src := "[a](page.md) [b](page.md#what-it-does) [c](page.md#state-o1-bytes-per-key-bounded-per-zone)\n" +
		"[d](page.md#canonical-host-neorate_limithost) [e](page.md#limits-1) [f](#own) [g](https://example.com/x#y)\n" +
		"`[h](nowhere.md)` ![i](page.md)\n\n## Own\n\n```\n[j](nowhere.md)\n```\n"
	from := filepath.Join(dir, "from.md")
	load := func(path string) (*mdDoc, error) {
		if path == from {
			return parseMarkdown([]byte(src)), nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		return parseMarkdown(b), nil
	}
	if p := linkProblems(from, parseMarkdown([]byte(src)).links, load); len(p) != 0 {
		t.Errorf("valid links reported: %v", p)
	}
	for _, bad := range []string{"[x](missing.md)", "[x](page.md#logs-and-metrics)", "[x](#nowhere)", "[x](page.md#limits-2)"} {
		if p := linkProblems(from, parseMarkdown([]byte(bad)).links, load); len(p) != 1 {
			t.Errorf("%s: %d problems, want 1: %v", bad, len(p), p)
		}
	}
}

type mdHeading struct {
	level int
	text  string
	line  int
}

type mdLink struct {
	target string
	line   int
}

type mdDoc struct {
	headings []mdHeading
	links    []mdLink
}

func parseDoc(t *testing.T, file string) *mdDoc {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return parseMarkdown(src)
}

var (
	atxHeading = regexp.MustCompile(`^(#{1,6})[ \t]+(.*?)[ \t#]*$`)
	inlineLink = regexp.MustCompile(`\]\(([^()\s]+)(?:\s+"[^"]*")?\)`)
	linkText   = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
)

// parseMarkdown returns the ATX headings and the inline link targets of a
// Markdown file, outside fenced code blocks and code spans.
func parseMarkdown(src []byte) *mdDoc {
	d := new(mdDoc)
	fence := ""
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(nil, 1<<20)
	for ln := 1; sc.Scan(); ln++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]) == "" {
				fence = ""
			}
			continue
		}
		if f := fenceOpen(trimmed); f != "" {
			fence = f
			continue
		}
		text := stripCodeSpans(line)
		if m := atxHeading.FindStringSubmatch(line); m != nil && !strings.HasPrefix(line, " ") {
			d.headings = append(d.headings, mdHeading{level: len(m[1]), text: m[2], line: ln})
		}
		for _, m := range inlineLink.FindAllStringSubmatch(text, -1) {
			d.links = append(d.links, mdLink{target: m[1], line: ln})
		}
	}
	return d
}

// fenceOpen returns the fence (``` or ~~~, at least three) a line opens.
func fenceOpen(trimmed string) string {
	for _, c := range []string{"`", "~"} {
		n := len(trimmed) - len(strings.TrimLeft(trimmed, c))
		if n >= 3 {
			return strings.Repeat(c, n)
		}
	}
	return ""
}

// stripCodeSpans removes the code spans of a line (a run of backticks to
// the next run of the same length).
func stripCodeSpans(line string) string {
	var b strings.Builder
	for i := 0; i < len(line); {
		if line[i] != '`' {
			b.WriteByte(line[i])
			i++
			continue
		}
		n := i
		for n < len(line) && line[n] == '`' {
			n++
		}
		run := line[i:n]
		end := -1
		for j := n; j < len(line); {
			k := strings.Index(line[j:], run)
			if k < 0 {
				break
			}
			k += j
			e := k + len(run)
			if e < len(line) && line[e] == '`' { // a longer run
				for e < len(line) && line[e] == '`' {
					e++
				}
				j = e
				continue
			}
			end = e
			break
		}
		if end < 0 { // no closing run: literal backticks
			b.WriteString(run)
			i = n
			continue
		}
		i = end
	}
	return b.String()
}

// templateProblems compares a page's # and ## headings with the template.
func templateProblems(hs []mdHeading) []string {
	var out []string
	var titles, sections []string
	for _, h := range hs {
		switch h.level {
		case 1:
			titles = append(titles, h.text)
		case 2:
			sections = append(sections, h.text)
		}
	}
	if len(titles) != 1 || len(hs) == 0 || hs[0].level != 1 {
		out = append(out, fmt.Sprintf("want one # title as the first heading, have %q", titles))
	}
	want := docTemplate
	if len(sections) == len(docTemplate)+1 && sections[len(sections)-1] == docTemplateOptional {
		want = append(append([]string{}, docTemplate...), docTemplateOptional)
	}
	if strings.Join(sections, "\n") != strings.Join(want, "\n") {
		out = append(out, fmt.Sprintf("## headings %q, want %q (then optionally %q)", sections, docTemplate, docTemplateOptional))
	}
	return out
}

// linkProblems checks the relative links of file: the file (or directory)
// they name exists and, for a #fragment into a Markdown file, the file has
// a heading with that anchor.
func linkProblems(file string, links []mdLink, load func(string) (*mdDoc, error)) []string {
	var out []string
	for _, l := range links {
		if strings.Contains(l.target, "://") || strings.HasPrefix(l.target, "mailto:") {
			continue
		}
		path, frag, _ := strings.Cut(l.target, "#")
		where := fmt.Sprintf("%s:%d: link %s", file, l.line, l.target)
		dest := file
		if path != "" {
			dest = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
			if _, err := os.Stat(dest); err != nil {
				out = append(out, fmt.Sprintf("%s: %v", where, err))
				continue
			}
		}
		if frag == "" || !strings.HasSuffix(dest, ".md") {
			continue
		}
		d, err := load(dest)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", where, err))
			continue
		}
		if !headingAnchors(d.headings)[frag] {
			out = append(out, fmt.Sprintf("%s: no heading with anchor #%s in %s", where, frag, dest))
		}
	}
	return out
}

// headingAnchors returns the anchors GitHub gives the headings: the text
// (code spans' content, links' text) in lower case, without punctuation
// other than - and _, spaces turned to -; a repeated anchor gets -1, -2, ...
func headingAnchors(hs []mdHeading) map[string]bool {
	out := map[string]bool{}
	count := map[string]int{}
	for _, h := range hs {
		text := linkText.ReplaceAllString(h.text, "$1")
		var b strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case r == ' ':
				b.WriteByte('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.IsMark(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := count[a]; n > 0 {
			out[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			out[a] = true
		}
		count[a]++
	}
	return out
}
