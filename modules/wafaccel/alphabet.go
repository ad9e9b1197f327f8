package wafaccel

import (
	"regexp/syntax"
	"unicode"
)

// Alphabet restriction: when every byte of an input belongs to a small ASCII
// alphabet, every character a regular expression consumes from it belongs to
// that alphabet too, so the expression matches the input exactly when the
// expression with each character class (and literal) intersected with the
// alphabet does. Restricted this way, the CRS's evasion-tolerant patterns
// lose their optional punctuation between letters (`b["')\[\\]*...u...s`
// becomes the word "bus..."), and the prefilter derived from the restricted
// expression requires whole words where the unrestricted one could only
// require single letters. Empty-width assertions (^, $, \b) are kept as they
// are: they look at the same input either way.

// numAlphabets is the number of alphabets; they are nested, smallest first.
const numAlphabets = 2

// alphabets are the ASCII alphabets prefilters have restricted variants for:
// the characters of identifiers, numbers, words, e-mail addresses and JSON
// argument names, then those plus the punctuation of URLs and header values.
var alphabets = func() [numAlphabets]byteSet {
	var a [numAlphabets]byteSet
	add := func(b *byteSet, s string) {
		for i := 0; i < len(s); i++ {
			b.add(s[i])
		}
	}
	for c := byte('0'); c <= '9'; c++ {
		a[0].add(c)
	}
	for c := byte('a'); c <= 'z'; c++ {
		a[0].add(c)
		a[0].add(c - 'a' + 'A')
	}
	add(&a[0], " ._-@")
	a[1] = a[0]
	add(&a[1], "/:,;=()+*?#!~%&")
	return a
}()

// alphaLevel[c] is the index of the smallest alphabet holding byte c, or
// numAlphabets.
var alphaLevel = func() [256]uint8 {
	var l [256]uint8
	for c := 0; c < 256; c++ {
		l[c] = numAlphabets
		for k := numAlphabets - 1; k >= 0; k-- {
			if alphabets[k].has(byte(c)) {
				l[c] = uint8(k)
			}
		}
	}
	return l
}()

// textAlphabet returns the index of the smallest alphabet holding every byte
// of s, or numAlphabets.
func textAlphabet(s string) int {
	m := uint8(0)
	for i := 0; i < len(s); i++ {
		m = max(m, alphaLevel[s[i]])
	}
	return int(m)
}

// setAlphabet is textAlphabet for a set of bytes.
func setAlphabet(b byteSet) int {
	for k := range alphabets {
		a := &alphabets[k]
		if b[0]&^a[0]|b[1]&^a[1]|b[2]&^a[2]|b[3]&^a[3] == 0 {
			return k
		}
	}
	return numAlphabets
}

// restrict returns re restricted to inputs within alpha (ASCII), or nil
// when it cannot match any such input. re is not modified.
func restrict(re *syntax.Regexp, alpha *byteSet) *syntax.Regexp {
	switch re.Op {
	case syntax.OpNoMatch:
		return nil
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText,
		syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return re
	case syntax.OpLiteral:
		subs := make([]*syntax.Regexp, 0, len(re.Rune))
		for _, r := range re.Rune {
			cls := alphaRunes(r, re.Flags&syntax.FoldCase != 0, alpha)
			if len(cls) == 0 {
				return nil
			}
			subs = append(subs, classOf(cls, re.Flags))
		}
		if len(subs) == 1 {
			return subs[0]
		}
		return &syntax.Regexp{Op: syntax.OpConcat, Flags: re.Flags, Sub: subs}
	case syntax.OpCharClass:
		var in []rune
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for c := max(re.Rune[i], 0); c <= re.Rune[i+1] && c < 128; c++ {
				if alpha.has(byte(c)) {
					in = append(in, c)
				}
			}
		}
		if len(in) == 0 {
			return nil
		}
		return classOf(in, re.Flags)
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		var in []rune
		for c := rune(0); c < 128; c++ {
			if alpha.has(byte(c)) && (c != '\n' || re.Op == syntax.OpAnyChar) {
				in = append(in, c)
			}
		}
		if len(in) == 0 {
			return nil
		}
		return classOf(in, re.Flags)
	case syntax.OpCapture:
		sub := restrict(re.Sub[0], alpha)
		if sub == nil {
			return nil
		}
		return with(re, sub)
	case syntax.OpStar, syntax.OpQuest:
		sub := restrict(re.Sub[0], alpha)
		if sub == nil {
			return &syntax.Regexp{Op: syntax.OpEmptyMatch, Flags: re.Flags}
		}
		return with(re, sub)
	case syntax.OpPlus:
		sub := restrict(re.Sub[0], alpha)
		if sub == nil {
			return nil
		}
		return with(re, sub)
	case syntax.OpRepeat:
		sub := restrict(re.Sub[0], alpha)
		if sub == nil {
			if re.Min == 0 {
				return &syntax.Regexp{Op: syntax.OpEmptyMatch, Flags: re.Flags}
			}
			return nil
		}
		return with(re, sub)
	case syntax.OpConcat:
		subs := make([]*syntax.Regexp, len(re.Sub))
		for i, s := range re.Sub {
			if subs[i] = restrict(s, alpha); subs[i] == nil {
				return nil
			}
		}
		return with(re, subs...)
	case syntax.OpAlternate:
		var subs []*syntax.Regexp
		for _, s := range re.Sub {
			if r := restrict(s, alpha); r != nil {
				subs = append(subs, r)
			}
		}
		switch len(subs) {
		case 0:
			return nil
		case 1:
			return subs[0]
		}
		return with(re, subs...)
	}
	// An operator this code does not know: keep it unrestricted (the
	// analyzer imposes no requirement for what it does not understand).
	return re
}

// with returns a copy of re with the given sub-expressions.
func with(re *syntax.Regexp, subs ...*syntax.Regexp) *syntax.Regexp {
	c := *re
	c.Sub = subs
	c.Sub0 = [1]*syntax.Regexp{}
	return &c
}

// alphaRunes returns the characters of alpha that the literal character r
// matches (with fold: every case variant of r).
func alphaRunes(r rune, fold bool, alpha *byteSet) []rune {
	var out []rune
	add := func(c rune) {
		if c < 128 && alpha.has(byte(c)) {
			out = append(out, c)
		}
	}
	add(r)
	if fold {
		for c := unicode.SimpleFold(r); c != r; c = unicode.SimpleFold(c) {
			add(c)
		}
	}
	return out
}

// classOf returns a character class (or a literal, for one character)
// matching exactly the given ASCII characters.
func classOf(cs []rune, flags syntax.Flags) *syntax.Regexp {
	flags &^= syntax.FoldCase
	if len(cs) == 1 {
		return &syntax.Regexp{Op: syntax.OpLiteral, Flags: flags, Rune: []rune{cs[0]}}
	}
	var set [128]bool
	for _, c := range cs {
		set[c] = true
	}
	var ranges []rune
	for c := 0; c < 128; c++ {
		if !set[c] {
			continue
		}
		lo := c
		for c+1 < 128 && set[c+1] {
			c++
		}
		ranges = append(ranges, rune(lo), rune(c))
	}
	return &syntax.Regexp{Op: syntax.OpCharClass, Flags: flags, Rune: ranges}
}
