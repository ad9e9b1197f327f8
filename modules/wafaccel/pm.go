package wafaccel

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"

	"github.com/corazawaf/coraza/v3/experimental/plugins"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	ahocorasick "github.com/petar-dambovaliev/aho-corasick"
)

// The @pm, @pmFromFile and @pmf operators, registered in place of Coraza's
// so that rule skipping knows each rule's phrase list exactly as the
// operator was built with it (a rule's text only names a data file; which
// file that is depends on the WAF's root filesystem and include path). The
// matching semantics are Coraza's v3.8.1 ones, written independently and
// built on the same Aho-Corasick library with the same options (phrases
// lowercased, ASCII case-insensitive, leftmost-longest; a value shorter than
// the shortest phrase does not match; with capturing on, up to 10 matches
// are captured). FuzzPMAgainstCoraza checks them against Coraza's own.

func init() {
	plugins.RegisterOperator("pm", newPMOperator)
	plugins.RegisterOperator("pmFromFile", newPMFromFileOperator)
	plugins.RegisterOperator("pmf", newPMFromFileOperator)
}

// phraseSet is one compiled phrase list.
type phraseSet struct {
	ac     ahocorasick.AhoCorasick
	minLen int  // length of the shortest phrase
	empty  bool // some phrase is empty: every value matches
	// grams[i], lens[i]: the bigrams and length of phrase i (textIndex)
	grams [][]uint16
	lens  []int
}

// found reports whether some phrase occurs in s (ASCII case-insensitive),
// regardless of the minimum length rule (rule skipping asks it of the joined
// values of a rule's targets). idx, when set, is s's bigram index: when no
// phrase's bigrams all occur, s is not scanned.
func (p *phraseSet) found(s string, idx *textIndex) bool {
	if p.empty {
		return true
	}
	if idx != nil {
		may := false
		for i, g := range p.grams {
			if idx.mayHold(g, p.lens[i]) {
				may = true
				break
			}
		}
		if !may {
			return false
		}
	}
	it := p.ac.Iter(s)
	return it.Next() != nil
}

// pmOperator is @pm / @pmFromFile / @pmf.
type pmOperator struct {
	p *phraseSet
}

func (o *pmOperator) Evaluate(tx plugintypes.TransactionState, value string) bool {
	if len(value) < o.p.minLen {
		return false
	}
	it := o.p.ac.Iter(value)
	if !tx.Capturing() {
		return it.Next() != nil
	}
	n := 0
	for m := it.Next(); m != nil; m = it.Next() {
		tx.CaptureField(n, value[m.Start():m.End()])
		n++
		if n == 10 {
			return true
		}
	}
	return n > 0
}

// pmRegistry maps "pm\x00<argument>" and "pmFromFile\x00<argument>" to the
// phrase lists operators were built with, for rule skipping. It grows with
// the configured phrase lists and data files and is never evicted, like the
// rx cache.
var pmRegistry struct {
	sync.Mutex
	m map[string]*pmEntry
}

type pmEntry struct {
	text string     // the phrases joined by newlines
	p    *phraseSet // nil once two different lists were built for one key
}

// registerPhrases records the list an operator was built with under key.
func registerPhrases(key string, phrases []string, p *phraseSet) {
	text := strings.Join(phrases, "\n")
	pmRegistry.Lock()
	defer pmRegistry.Unlock()
	if pmRegistry.m == nil {
		pmRegistry.m = map[string]*pmEntry{}
	}
	e := pmRegistry.m[key]
	switch {
	case e == nil:
		pmRegistry.m[key] = &pmEntry{text: text, p: p}
	case e.text != text:
		// The same argument named different lists (another root or include
		// path): which one a rule uses cannot be told from its text.
		e.p = nil
	}
}

// lookupPhrases returns the phrase list operators named by kind ("pm" or
// "pmFromFile") with argument arg were built with, when there is exactly one.
func lookupPhrases(kind, arg string) *phraseSet {
	pmRegistry.Lock()
	defer pmRegistry.Unlock()
	if e := pmRegistry.m[kind+"\x00"+arg]; e != nil {
		return e.p
	}
	return nil
}

func buildPhrases(phrases []string, dfa bool) *phraseSet {
	b := ahocorasick.NewAhoCorasickBuilder(ahocorasick.Opts{
		AsciiCaseInsensitive: true,
		MatchOnlyWholeWords:  false,
		MatchKind:            ahocorasick.LeftMostLongestMatch,
		DFA:                  dfa,
	})
	p := &phraseSet{ac: b.Build(phrases)}
	for i, s := range phrases {
		if s == "" {
			p.empty = true
		} else {
			p.grams = append(p.grams, bigrams(s))
			p.lens = append(p.lens, len(s))
		}
		if i == 0 || len(s) < p.minLen {
			p.minLen = len(s)
		}
	}
	return p
}

func memoize(m plugintypes.Memoizer, key string, fn func() *phraseSet) *phraseSet {
	if m == nil {
		return fn()
	}
	v, _ := m.Do("wafaccel:"+key, func() (any, error) { return fn(), nil })
	return v.(*phraseSet)
}

func newPMOperator(options plugintypes.OperatorOptions) (plugintypes.Operator, error) {
	data := strings.ToLower(options.Arguments)
	phrases := strings.Split(data, " ")
	p := memoize(options.Memoizer, "pm:"+data, func() *phraseSet { return buildPhrases(phrases, true) })
	registerPhrases("pm\x00"+options.Arguments, phrases, p)
	return &pmOperator{p: p}, nil
}

func newPMFromFileOperator(options plugintypes.OperatorOptions) (plugintypes.Operator, error) {
	name := options.Arguments
	data, err := readDataFile(name, options.Path, options.Root)
	if err != nil {
		return nil, err
	}
	var phrases []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		phrases = append(phrases, strings.ToLower(l))
	}
	sum := sha256.Sum256(data)
	key := "pmFromFile:" + strings.Join(options.Path, ",") + name + "\x00" + hex.EncodeToString(sum[:])
	p := memoize(options.Memoizer, key, func() *phraseSet {
		return buildPhrases(phrases, false)
	})
	registerPhrases("pmFromFile\x00"+name, phrases, p)
	return &pmOperator{p: p}, nil
}

var errNoDataDirs = errors.New("empty dirs")

// readDataFile resolves a data file as Coraza does: an absolute name in the
// root filesystem, otherwise the first of the directories that holds it.
func readDataFile(name string, dirs []string, root fs.FS) ([]byte, error) {
	if path.IsAbs(name) {
		return fs.ReadFile(root, name)
	}
	if len(dirs) == 0 {
		return nil, errNoDataDirs
	}
	var err error
	for _, d := range dirs {
		var b []byte
		b, err = fs.ReadFile(root, path.Join(d, name))
		if err == nil {
			return b, nil
		}
		if !os.IsNotExist(err) {
			return nil, err
		}
	}
	return nil, err
}

// Interface guards
var _ plugintypes.Operator = (*pmOperator)(nil)
