package wafcontent

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// graphQLArguments reads doc as a GraphQL executable document (the
// GraphQL specification, October 2021: operations and fragments) and returns
// the text the document carries as data: every string literal (block
// strings included), decoded as the server decodes it, and the text of every
// comment. Names (fields, arguments, types, variables, directives), numbers,
// enum values and punctuation are the document's structure, which the server
// checks against its schema; they are not returned. ok is false when doc is
// not such a document: not lexically valid, unbalanced brackets, a `$` or
// `@` not followed by a name, or a definition that is not `{ ... }`,
// `query|mutation|subscription [Name] [(...)] [@dir...] { ... }` or
// `fragment Name on Type [@dir...] { ... }`.
func graphQLArguments(doc string) (args []string, ok bool) {
	var toks []gqlToken
	i := 0
	if strings.HasPrefix(doc, "\ufeff") {
		i = 3
	}
	depth := 0
	var stack []byte
	for i < len(doc) {
		c := doc[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',':
			i++
			continue
		case c == '#':
			j := i + 1
			for j < len(doc) && doc[j] != '\n' && doc[j] != '\r' {
				j++
			}
			if !utf8.ValidString(doc[i+1 : j]) {
				return nil, false
			}
			if t := strings.TrimSpace(doc[i+1 : j]); t != "" {
				args = append(args, t)
			}
			i = j
			continue
		}
		t := gqlToken{kind: c, depth: depth}
		switch {
		case c == '{' || c == '(' || c == '[':
			stack = append(stack, c)
			depth++
			i++
		case c == '}' || c == ')' || c == ']':
			open := map[byte]byte{'}': '{', ')': '(', ']': '['}[c]
			if len(stack) == 0 || stack[len(stack)-1] != open {
				return nil, false
			}
			stack = stack[:len(stack)-1]
			depth--
			t.depth = depth
			i++
		case c == '$' || c == '@':
			if n := nameEnd(doc, i+1); n == i+1 {
				return nil, false
			}
			i++
		case c == '!' || c == '&' || c == ':' || c == '=' || c == '|':
			i++
		case c == '.':
			if !strings.HasPrefix(doc[i:], "...") {
				return nil, false
			}
			i += 3
		case c == '"':
			s, n, good := readGraphQLString(doc, i)
			if !good {
				return nil, false
			}
			if s != "" {
				args = append(args, s)
			}
			t.kind = 's'
			i = n
		case c == '-' || c >= '0' && c <= '9':
			n, good := numberEnd(doc, i)
			if !good {
				return nil, false
			}
			t.kind = '0'
			i = n
		case isNameStart(c):
			n := nameEnd(doc, i)
			t.kind, t.name = 'a', doc[i:n]
			i = n
		default:
			return nil, false
		}
		toks = append(toks, t)
	}
	if len(stack) != 0 || !gqlDefinitions(toks) {
		return nil, false
	}
	return args, true
}

// gqlToken is a token of a GraphQL document: its kind (the punctuator's
// first byte, 'a' a name, 's' a string, '0' a number), the name's text,
// and the bracket depth it starts at.
type gqlToken struct {
	kind  byte
	name  string
	depth int
}

// gqlDefinitions checks the top level of a document: one or more
// definitions, each `{ ... }`, `query|mutation|subscription [Name] [(...)]
// [@dir [(...)]]... { ... }` or `fragment Name on Name [@dir [(...)]]...
// { ... }`.
func gqlDefinitions(toks []gqlToken) bool {
	if len(toks) == 0 {
		return false
	}
	i := 0
	// group skips a bracketed group opening at toks[i].
	group := func() bool {
		d := toks[i].depth
		for i++; i < len(toks); i++ {
			if toks[i].depth == d && (toks[i].kind == '}' || toks[i].kind == ')' || toks[i].kind == ']') {
				i++
				return true
			}
		}
		return false
	}
	name := func() bool {
		if i < len(toks) && toks[i].kind == 'a' {
			i++
			return true
		}
		return false
	}
	directives := func() bool {
		for i < len(toks) && toks[i].kind == '@' {
			i++
			if !name() {
				return false
			}
			if i < len(toks) && toks[i].kind == '(' && !group() {
				return false
			}
		}
		return true
	}
	selectionSet := func() bool {
		return i < len(toks) && toks[i].kind == '{' && group()
	}
	for i < len(toks) {
		t := toks[i]
		switch {
		case t.kind == '{':
			if !selectionSet() {
				return false
			}
		case t.kind == 'a' && (t.name == "query" || t.name == "mutation" || t.name == "subscription"):
			i++
			name()
			if i < len(toks) && toks[i].kind == '(' && !group() {
				return false
			}
			if !directives() || !selectionSet() {
				return false
			}
		case t.kind == 'a' && t.name == "fragment":
			i++
			if !name() || i >= len(toks) || toks[i].kind != 'a' || toks[i].name != "on" {
				return false
			}
			i++
			if !name() || !directives() || !selectionSet() {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func isNameStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// nameEnd returns the end of the name starting at i (i when there is none).
func nameEnd(s string, i int) int {
	if i >= len(s) || !isNameStart(s[i]) {
		return i
	}
	i++
	for i < len(s) && (isNameStart(s[i]) || s[i] >= '0' && s[i] <= '9') {
		i++
	}
	return i
}

// numberEnd reads an IntValue or FloatValue; a number may not be followed
// by a name start or a dot.
func numberEnd(s string, i int) (int, bool) {
	if s[i] == '-' {
		i++
	}
	digits := func() bool {
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i > j
	}
	start := i
	if !digits() {
		return 0, false
	}
	if s[start] == '0' && i-start > 1 {
		return 0, false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if !digits() {
			return 0, false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if !digits() {
			return 0, false
		}
	}
	if i < len(s) && (isNameStart(s[i]) || s[i] == '.') {
		return 0, false
	}
	return i, true
}

// readGraphQLString reads a string or block string starting at s[i] == '"'
// and returns its value and the index after it.
func readGraphQLString(s string, i int) (string, int, bool) {
	if strings.HasPrefix(s[i:], `"""`) {
		j := i + 3
		var b strings.Builder
		for {
			k := strings.Index(s[j:], `"""`)
			if k < 0 {
				return "", 0, false
			}
			if k > 0 && s[j+k-1] == '\\' {
				b.WriteString(s[j : j+k-1])
				b.WriteString(`"""`)
				j += k + 3
				continue
			}
			b.WriteString(s[j : j+k])
			v := b.String()
			if !utf8.ValidString(v) {
				return "", 0, false
			}
			return strings.TrimSpace(v), j + k + 3, true
		}
	}
	var b strings.Builder
	j := i + 1
	for j < len(s) {
		c := s[j]
		switch {
		case c == '"':
			v := b.String()
			if !utf8.ValidString(v) {
				return "", 0, false
			}
			return v, j + 1, true
		case c == '\n' || c == '\r':
			return "", 0, false
		case c == '\\':
			if j+1 >= len(s) {
				return "", 0, false
			}
			e := s[j+1]
			switch e {
			case '"', '\\', '/':
				b.WriteByte(e)
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				var hex string
				n := j + 2
				if n < len(s) && s[n] == '{' {
					k := strings.IndexByte(s[n:], '}')
					if k < 0 {
						return "", 0, false
					}
					hex, n = s[n+1:n+k], n+k+1
				} else if n+4 <= len(s) {
					hex, n = s[n:n+4], n+4
				}
				r, err := strconv.ParseUint(hex, 16, 32)
				if err != nil || hex == "" || !utf8.ValidRune(rune(r)) {
					return "", 0, false
				}
				b.WriteRune(rune(r))
				j = n
				continue
			default:
				return "", 0, false
			}
			j += 2
		default:
			b.WriteByte(c)
			j++
		}
	}
	return "", 0, false
}
