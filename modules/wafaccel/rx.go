package wafaccel

import (
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	"rsc.io/binaryregexp"
)

// rxOperator is the @rx operator. Its matching semantics are those of
// Coraza's own @rx (v3.8.1): the pattern is compiled with Go's regexp behind a
// "(?sm)" flags prefix (or "(?s)" under the coraza.rule.no_regex_multiline
// build tag), patterns that must match non-UTF-8 bytes use
// rsc.io/binaryregexp, and when the transaction is capturing, groups 0..8 are
// captured. The acceleration is a literal prefilter consulted before the
// regex engine while the switch is on.
type rxOperator struct {
	c *compiledRx
}

// compiledRx is everything derived from one pattern. It is immutable and
// shared by every rule and every WAF (tenant) in the process that uses the
// pattern.
type compiledRx struct {
	re  *regexp.Regexp
	bin *binaryregexp.Regexp
	pf  *prefilter // nil: the pattern imposes no usable requirement
}

// rxCache is the process-wide pattern cache. It grows with the number of
// distinct patterns configured (the CRS has a few hundred) and is never
// evicted: patterns survive config reloads, which is what makes reloads and
// additional tenants cheap.
var rxCache sync.Map // string -> *compiledRx

var (
	rxCalls   atomic.Uint64 // evaluations of patterns that have a prefilter
	rxSkipped atomic.Uint64 // evaluations decided by the prefilter alone
)

func newRxOperator(options plugintypes.OperatorOptions) (plugintypes.Operator, error) {
	c, err := compileRx(options.Arguments)
	if err != nil {
		return nil, err
	}
	return &rxOperator{c: c}, nil
}

func compileRx(arg string) (*compiledRx, error) {
	if v, ok := rxCache.Load(arg); ok {
		return v.(*compiledRx), nil
	}
	c, err := compileUncached(arg)
	if err != nil {
		return nil, err
	}
	v, _ := rxCache.LoadOrStore(arg, c)
	return v.(*compiledRx), nil
}

func compileUncached(arg string) (*compiledRx, error) {
	data := multilinePrefix + arg
	c := &compiledRx{}
	if needsBytewise(data) {
		re, err := binaryregexp.Compile(arg)
		if err != nil {
			return nil, err
		}
		c.bin = re
		c.pf = buildBytePrefilter(arg)
	} else {
		re, err := regexp.Compile(data)
		if err != nil {
			return nil, err
		}
		c.re = re
		c.pf = buildPrefilter(data)
	}
	return c, nil
}

func (o *rxOperator) Evaluate(tx plugintypes.TransactionState, value string) bool {
	c := o.c
	if c.pf != nil && enabled.Load() {
		if countStats {
			rxCalls.Add(1)
		}
		if !c.pf.mayMatch(value) {
			if countStats {
				rxSkipped.Add(1)
			}
			return false
		}
	}
	if c.bin != nil {
		return evalBinary(c.bin, tx, value)
	}
	if tx.Capturing() {
		match := c.re.FindStringSubmatchIndex(value)
		if match == nil {
			return false
		}
		for i := 0; i < len(match)/2; i++ {
			if i == 9 {
				return true
			}
			if match[2*i] >= 0 {
				tx.CaptureField(i, value[match[2*i]:match[2*i+1]])
			} else {
				tx.CaptureField(i, "")
			}
		}
		return true
	}
	return c.re.MatchString(value)
}

func evalBinary(re *binaryregexp.Regexp, tx plugintypes.TransactionState, value string) bool {
	if tx.Capturing() {
		match := re.FindStringSubmatch(value)
		if len(match) == 0 {
			return false
		}
		for i, c := range match {
			if i == 9 {
				return true
			}
			tx.CaptureField(i, c)
		}
		return true
	}
	return re.MatchString(value)
}

// countStats enables the evaluation counters. Tests set it while no other
// goroutine evaluates rules.
var countStats = false

// needsBytewise applies Coraza's rule for choosing bytewise matching: after
// decoding the \xHH and \x{HH...} escapes of expr (two hex digits taken), the
// result is not valid UTF-8. It is written independently to take exactly the
// same decisions, so the same patterns take the bytewise path.
func needsBytewise(expr string) bool {
	buf := make([]byte, 0, len(expr))
	for i := 0; i < len(expr); i++ {
		if expr[i] != '\\' {
			buf = append(buf, expr[i])
			continue
		}
		if len(expr)-i < 4 {
			buf = append(buf, expr[i:]...)
			break
		}
		if expr[i+1] != 'x' {
			buf = append(buf, '\\')
			continue
		}
		digits, skip := expr[i+2:], 3
		if len(expr)-i >= 6 && expr[i+2] == '{' {
			if end := strings.IndexByte(expr[i:], '}'); end >= 0 {
				digits, skip = expr[i+3:i+end], end
			}
		}
		hi, ok1 := unhex(digits, 0)
		lo, ok2 := unhex(digits, 1)
		if !ok1 || !ok2 {
			buf = append(buf, '\\')
			continue
		}
		buf = append(buf, hi<<4|lo)
		i += skip
	}
	return !utf8.Valid(buf)
}

func unhex(s string, i int) (byte, bool) {
	if i >= len(s) {
		return 0, false
	}
	switch c := s[i]; {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
