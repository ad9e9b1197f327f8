package wafaccel

import (
	"strconv"
	"strings"

	"github.com/corazawaf/coraza/v3/types/variables"
)

// A small reader for the text of one SecRule (types.RuleMetadata.Raw(), as
// Coraza keeps it: for a chain, the head's text followed by the links'). It
// extracts only what rule skipping needs and refuses (ok=false) anything it
// does not fully understand. It is written from the SecLang syntax, taking the
// same decisions as Coraza's parser where they matter (quoted operator with
// \" escapes, the implicit @rx, negation), and every pattern it extracts is
// checked against the patterns Coraza actually compiled (the rx cache).

type ruleText struct {
	id      int
	vars    []ruleTarget
	neg     bool
	opName  string
	opArg   string
	trans   []string // transformations after the last t:none
	hasNone bool     // t:none occurs: SecDefaultAction transformations are cleared
	multi   bool     // multiMatch
}

type ruleTarget struct {
	name    string
	key     string
	exclude bool // !VAR:key
	count   bool // &VAR
}

// splitSecRule splits a SecRule's text into variables, operator (unquoted and
// unescaped) and actions (unquoted).
func splitSecRule(raw string) (vars, op, acts string, ok bool) {
	s := strings.TrimSpace(raw)
	name, rest, found := strings.Cut(s, " ")
	if !found || !strings.EqualFold(name, "SecRule") {
		return "", "", "", false
	}
	rest = strings.Trim(rest, " ")
	vars, rest, found = strings.Cut(rest, " ")
	if !found {
		return "", "", "", false
	}
	rest = strings.TrimLeft(rest, " ")
	opq, rest, ok := cutQuoted(rest)
	if !ok {
		return "", "", "", false
	}
	op = unescapeQuotes(opq[1 : len(opq)-1])
	rest = strings.TrimLeft(rest, " ")
	if rest == "" {
		return vars, op, "", true
	}
	actq, _, ok := cutQuoted(rest)
	if !ok {
		return "", "", "", false
	}
	return vars, op, actq[1 : len(actq)-1], true
}

// cutQuoted cuts a double-quoted string (with its quotes) off the start of
// s; a quote preceded by an odd number of backslashes is escaped.
func cutQuoted(s string) (string, string, bool) {
	if len(s) == 0 || s[0] != '"' {
		return "", "", false
	}
	bs := 0
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			bs++
		case s[i] == '"' && bs%2 == 0:
			return s[:i+1], s[i+1:], true
		default:
			bs = 0
		}
	}
	return "", "", false
}

func unescapeQuotes(s string) string {
	return strings.ReplaceAll(s, `\"`, `"`)
}

// splitActions splits an action list at commas outside single quotes, with
// Coraza's parser's rule for escapes: a character preceded by a backslash is
// taken literally (the first character is never a separator).
func splitActions(s string) []string {
	var out []string
	start, quoted := 0, false
	for i := 1; i < len(s); i++ {
		switch {
		case s[i-1] == '\\':
		case s[i] == '\'':
			quoted = !quoted
		case s[i] == ',' && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// splitTargets splits a variable list at '|' outside /regex/ keys.
func splitTargets(s string) ([]ruleTarget, bool) {
	s = strings.Trim(s, `"`)
	var out []ruleTarget
	for s != "" {
		var t ruleTarget
		if s[0] == '!' {
			t.exclude, s = true, s[1:]
		}
		if s != "" && s[0] == '&' {
			t.count, s = true, s[1:]
		}
		i := 0
		for i < len(s) && s[i] != ':' && s[i] != '|' {
			i++
		}
		t.name, s = s[:i], s[i:]
		if t.name == "" {
			return nil, false
		}
		if s != "" && s[0] == ':' {
			s = s[1:]
			j := -1
			if s != "" && s[0] == '/' {
				// A /regex/ key, which may hold '|'.
				j = 1
				for j < len(s) && s[j] != '/' {
					if s[j] == '\\' {
						j++
					}
					j++
				}
				if j >= len(s) || j+1 < len(s) && s[j+1] != '|' {
					j = -1 // not a regex key (e.g. XML:/*)
				}
			}
			if j >= 0 {
				t.key, s = s[:j+1], s[j+1:]
			} else {
				k := strings.IndexByte(s, '|')
				if k < 0 {
					k = len(s)
				}
				t.key, s = s[:k], s[k:]
			}
		}
		if s != "" {
			if s[0] != '|' {
				return nil, false
			}
			s = s[1:]
			if s == "" {
				return nil, false
			}
		}
		out = append(out, t)
	}
	return out, len(out) > 0
}

// parseRuleText reads the head of a SecRule.
func parseRuleText(raw string) (ruleText, bool) {
	var r ruleText
	vars, op, acts, ok := splitSecRule(raw)
	if !ok {
		return r, false
	}
	if r.vars, ok = splitTargets(vars); !ok {
		return r, false
	}
	switch {
	case op == "" || op[0] != '@' && op[0] != '!':
		op = "@rx " + op
	case op == "!":
		op = "!@rx"
	case len(op) > 1 && op[0] == '!' && op[1] != '@':
		op = "!@rx " + op[1:]
	}
	name, arg, _ := strings.Cut(op, " ")
	name = strings.TrimSpace(name)
	if strings.HasPrefix(name, "!") {
		r.neg, name = true, name[1:]
	}
	r.opName = strings.TrimPrefix(name, "@")
	r.opArg = strings.TrimSpace(arg)
	for _, a := range splitActions(acts) {
		k, v, _ := strings.Cut(strings.TrimSpace(a), ":")
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.Trim(strings.TrimSpace(v), "'")
		switch k {
		case "id":
			n, err := strconv.Atoi(v)
			if err != nil {
				return r, false
			}
			r.id = n
		case "t":
			if strings.EqualFold(v, "none") {
				r.trans, r.hasNone = nil, true
			} else {
				r.trans = append(r.trans, v)
			}
		case "multimatch":
			r.multi = true
		}
	}
	return r, r.id != 0
}

// skipTargets are the collections a candidate may target: request data that
// rules cannot change. Excluded keys (!VAR:key) and selected keys (VAR:key)
// are both read as the whole collection, which is a superset of the values
// Coraza evaluates.
var skipTargets = map[string]variables.RuleVariable{
	"ARGS": variables.Args, "ARGS_GET": variables.ArgsGet, "ARGS_POST": variables.ArgsPost,
	"ARGS_PATH": variables.ArgsPath, "ARGS_NAMES": variables.ArgsNames,
	"ARGS_GET_NAMES": variables.ArgsGetNames, "ARGS_POST_NAMES": variables.ArgsPostNames,
	"REQUEST_HEADERS": variables.RequestHeaders, "REQUEST_HEADERS_NAMES": variables.RequestHeadersNames,
	"REQUEST_COOKIES": variables.RequestCookies, "REQUEST_COOKIES_NAMES": variables.RequestCookiesNames,
	"REQUEST_URI": variables.RequestURI, "REQUEST_URI_RAW": variables.RequestURIRaw,
	"REQUEST_FILENAME": variables.RequestFilename, "REQUEST_BASENAME": variables.RequestBasename,
	"REQUEST_LINE": variables.RequestLine, "REQUEST_METHOD": variables.RequestMethod,
	"REQUEST_PROTOCOL": variables.RequestProtocol, "QUERY_STRING": variables.QueryString,
	"REQUEST_BODY": variables.RequestBody, "FILES": variables.Files, "FILES_NAMES": variables.FilesNames,
	"XML": variables.XML,
	// The response, for the rules of phases 3 and 4 (set before the phase's
	// rules run; no action writes them).
	"RESPONSE_BODY": variables.ResponseBody, "RESPONSE_HEADERS": variables.ResponseHeaders,
	"RESPONSE_HEADERS_NAMES": variables.ResponseHeadersNames, "RESPONSE_STATUS": variables.ResponseStatus,
	"RESPONSE_PROTOCOL": variables.ResponseProtocol, "RESPONSE_CONTENT_TYPE": variables.ResponseContentType,
	"RESPONSE_CONTENT_LENGTH": variables.ResponseContentLength,
}

// transSteps gives, for every transformation a candidate may use, how rule
// skipping accounts for it (checked against Coraza v3.8.1's implementations;
// TestTransformationSteps verifies each against Coraza's own on random
// inputs):
//   - active bytes: in their absence the transformation returns its input
//     unchanged;
//   - own: an exact implementation for ASCII input (lowercase, whitespace
//     removal and compression), applied to the values.
var transSteps = func() map[string]step {
	set := func(bs string, high bool) byteSet {
		var b byteSet
		for i := 0; i < len(bs); i++ {
			b.add(bs[i])
		}
		if high {
			for c := 0x80; c <= 0xFF; c++ {
				b.add(byte(c))
			}
		}
		return b
	}
	return map[string]step{
		"lowercase":          {own: asciiLower},
		"removewhitespace":   {own: removeASCIISpace},
		"compresswhitespace": {own: compressASCIISpace},
		"cmdline":            {own: cmdLine, anyBytes: true},
		// without '%', urlDecodeUni only turns '+' into ' '
		"urldecodeuni":     {active: set("%", false), own: plusToSpace, anyBytes: true},
		"htmlentitydecode": {active: set("&", false)},
		"jsdecode":         {active: set(`\`, false)},
		"cssdecode":        {active: set(`\`, false)},
		"escapeseqdecode":  {active: set(`\`, false)},
		"removenulls":      {active: set("\x00", false)},
		"utf8tounicode":    {active: set("", true)},
		"replacecomments":  {active: set("*", false)},
		// "/*", "*/", "<!--", "-->", "--" and "#" are what it removes
		"removecommentschar": {active: set("*-#", false)},
		// filepath.Clean changes a string without '/' only when it is "."
		"normalizepath": {active: set("/", false), dot: true},
		"normalisepath": {active: set("/", false), dot: true},
		// without '/', '\' and ':', normalizePathWin changes a value
		// only when it ends with '.' or ' ' (Windows trims those)
		"normalizepathwin": {active: set(`/\:`, false), tail: true},
		"normalisepathwin": {active: set(`/\:`, false), tail: true},
	}
}()

// asciiSpace reports whether c is one of the ASCII bytes Coraza's whitespace
// transformations treat as white space (unicode.IsSpace and isLatinSpace
// agree on ASCII).
func asciiSpace(c byte) bool {
	switch c {
	case '\t', '\n', '\v', '\f', '\r', ' ':
		return true
	}
	return false
}

// removeASCIISpace is t:removeWhitespace on ASCII input.
func removeASCIISpace(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if !asciiSpace(s[i]) {
			b = append(b, s[i])
		}
	}
	return string(b)
}

// cmdLine is t:cmdLine (ModSecurity's definition; bytewise, so exact on any
// input): delete \ " ' and ^; turn each run of space, comma, semicolon, tab,
// CR and LF into one space; delete a space before / or (; lowercase A-Z.
func cmdLine(s string) string {
	b := make([]byte, 0, len(s))
	space := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"', '\'', '\\', '^':
		case ' ', ',', ';', '\t', '\r', '\n':
			if !space {
				b = append(b, ' ')
				space = true
			}
		case '/', '(':
			if space {
				b = b[:len(b)-1]
			}
			space = false
			b = append(b, c)
		default:
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b = append(b, c)
			space = false
		}
	}
	return string(b)
}

// plusToSpace is t:urlDecodeUni on input without '%': '+' becomes ' '.
func plusToSpace(s string) string {
	if strings.IndexByte(s, '+') < 0 {
		return s
	}
	return strings.ReplaceAll(s, "+", " ")
}

// parseByteRanges reads the argument of @validateByteRange ("1-255",
// "9,10,13,32-126,128-255"): comma-separated bytes and ranges. It returns
// nil for anything else (Coraza would accept a few more spellings, such as
// spaces around numbers or an empty argument; those rules are not skipped).
func parseByteRanges(arg string) *byteSet {
	var b byteSet
	if arg == "" {
		return nil
	}
	for _, part := range strings.Split(arg, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		l, err1 := strconv.Atoi(lo)
		h, err2 := l, error(nil)
		if isRange {
			h, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || l < 0 || h > 255 || l > h || !digits(lo) || !digits(hi) && isRange {
			return nil
		}
		for c := l; c <= h; c++ {
			b.add(byte(c))
		}
	}
	return &b
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// compressASCIISpace is t:compressWhitespace on ASCII input: every run of
// white space becomes one space.
func compressASCIISpace(s string) string {
	b := make([]byte, 0, len(s))
	in := false
	for i := 0; i < len(s); i++ {
		if asciiSpace(s[i]) {
			if !in {
				b = append(b, ' ')
			}
			in = true
			continue
		}
		in = false
		b = append(b, s[i])
	}
	return string(b)
}

// candidate turns a rule's text into a skip candidate, or refuses.
func (r ruleText) candidate() (skipCand, []variables.RuleVariable, bool) {
	if r.neg || !r.hasNone {
		return skipCand{}, nil, false
	}
	c := skipCand{id: r.id, multi: r.multi}
	switch strings.ToLower(r.opName) {
	case "rx":
		v, ok := rxCache.Load(r.opArg)
		if !ok {
			return skipCand{}, nil, false // not a pattern Coraza compiled with our operator
		}
		c.pf = v.(*compiledRx).pf
	case "pm":
		// The phrase list our operator was built with for this argument
		// (which also validates the reader's extraction).
		c.pm = lookupPhrases("pm", r.opArg)
	case "pmfromfile", "pmf":
		c.pm = lookupPhrases("pmFromFile", r.opArg)
	case "validatebyterange":
		c.valid = parseByteRanges(r.opArg)
	}
	if c.pf == nil && (c.pm == nil || c.pm.empty) && c.valid == nil {
		return skipCand{}, nil, false
	}
	key := ""
	for _, t := range r.trans {
		lt := strings.ToLower(t)
		sp, ok := transSteps[lt]
		if !ok {
			return skipCand{}, nil, false
		}
		key += lt + ","
		c.steps = append(c.steps, sp)
		c.keys = append(c.keys, key)
	}
	seen := map[variables.RuleVariable]bool{}
	var vars []variables.RuleVariable
	for _, t := range r.vars {
		if t.count {
			return skipCand{}, nil, false
		}
		if t.exclude {
			continue // fewer values: reading the whole collection is a superset
		}
		rv, ok := skipTargets[strings.ToUpper(t.name)]
		if !ok {
			return skipCand{}, nil, false
		}
		if !seen[rv] {
			seen[rv] = true
			vars = append(vars, rv)
		}
	}
	if len(vars) == 0 {
		return skipCand{}, nil, false
	}
	// A stable order, so that rules on the same collections share a group.
	for i := 1; i < len(vars); i++ {
		for j := i; j > 0 && vars[j] < vars[j-1]; j-- {
			vars[j], vars[j-1] = vars[j-1], vars[j]
		}
	}
	return c, vars, true
}
