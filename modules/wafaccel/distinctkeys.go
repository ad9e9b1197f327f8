package wafaccel

import (
	"regexp"
	"slices"
	"strings"
	"unsafe"

	"github.com/corazawaf/coraza/v3/collection"
	"github.com/corazawaf/coraza/v3/experimental/plugins"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	"github.com/corazawaf/coraza/v3/types"
)

// neoDistinctKeys: deterministic verdicts on requests whose collections hold
// several values under one key (docs/coraza-transformation-cache.md).
//
// Coraza v3.8.1 caches each value's transformed form for the rest of the
// phase under (pointer of the value's key string, position of the value in
// the list the rule's variable produced, variable, transformation chain).
// The list of a collection of several keys comes from a Go map, so the
// positions change from one rule to the next; when two values share one key
// string (every header of one multipart part is stored under the part's
// name; repeated request headers under one header name) a later rule can be
// handed the cached form of the other value at that position: it checks one
// value twice and never the other. CRS 922120/922130 then catch a
// Content-Transfer-Encoding part header only some of the time.
//
// The action gives every value of the request collections a key string of
// its own (same text, distinct memory) through the collections' public
// SetIndex: a key pointer then names one value, so whatever its position a
// cache entry holds that value's own transformed form. It changes no key or
// value text, and no value's place in its key's list. It must run before
// any rule of its phase that transforms those collections:
//
//	SecAction "id:900950,phase:1,pass,nolog,neoDistinctKeys"
//	SecAction "id:900951,phase:2,pass,nolog,neoDistinctKeys"
//
// (DistinctKeysDirectives.) It does not depend on the neo_waf_accel switch:
// it is a correctness fix, not a speed-up.

// DistinctKeysDirectives set up neoDistinctKeys; they go before every other
// rule.
const DistinctKeysDirectives = `SecAction "id:900950,phase:1,pass,nolog,neoDistinctKeys"
SecAction "id:900951,phase:2,pass,nolog,neoDistinctKeys"
`

func init() {
	plugins.RegisterAction("neodistinctkeys", func() plugintypes.Action { return distinctKeys{} })
}

type distinctKeys struct{}

func (distinctKeys) Init(plugintypes.RuleMetadata, string) error { return nil }
func (distinctKeys) Type() plugintypes.ActionType                { return plugintypes.ActionTypeNondisruptive }

func (distinctKeys) Evaluate(_ plugintypes.RuleMetadata, tx plugintypes.TransactionState) {
	v := tx.Variables()
	if tx.LastPhase() == types.PhaseRequestHeaders {
		distinct(v.RequestHeaders())
		distinct(v.RequestCookies())
		distinct(v.ArgsGet())
		distinct(v.ArgsPath())
		return
	}
	distinct(v.ArgsPost())
	distinct(v.MultipartPartHeaders())
	distinct(v.MultipartName())
	distinct(v.MultipartFilename())
	distinct(v.MultipartFilenameCharset())
	distinct(v.MultipartFilenameLanguage())
	distinct(v.Files())
	distinct(v.FilesNames())
	distinct(v.FilesSizes())
	distinct(v.FilesTmpNames())
}

var emptyKey = regexp.MustCompile(`^$`)

// distinct gives each value of col whose key string's memory another value
// shares a key string of its own.
func distinct(col collection.Map) {
	if col == nil {
		return
	}
	mds := col.FindAll()
	if len(mds) < 2 {
		return
	}
	var buf [32]uintptr
	ptrs := buf[:0]
	for _, md := range mds {
		ptrs = append(ptrs, keyPtr(md.Key()))
	}
	slices.Sort(ptrs)
	var shared []uintptr
	for i := 1; i < len(ptrs); i++ {
		if ptrs[i] == ptrs[i-1] && (len(shared) == 0 || shared[len(shared)-1] != ptrs[i]) {
			shared = append(shared, ptrs[i])
		}
	}
	if len(shared) == 0 {
		return
	}
	// Rewrite every value of each key slot holding a shared pointer, in the
	// slot's own order (SetIndex addresses a value by its place there).
	done := map[string]bool{}
	for _, md := range mds {
		k := md.Key()
		if _, ok := slices.BinarySearch(shared, keyPtr(k)); !ok || done[k] {
			continue
		}
		done[k] = true
		var slot []types.MatchData
		if k == "" {
			slot = col.FindRegex(emptyKey)
		} else {
			slot = col.FindString(k)
		}
		for i, s := range slot {
			col.SetIndex(ownKey(s.Key()), i, s.Value())
		}
	}
}

func keyPtr(s string) uintptr { return uintptr(unsafe.Pointer(unsafe.StringData(s))) }

// ownKey returns s in memory of its own (for "", an empty string whose data
// pointer is its own).
func ownKey(s string) string {
	if s == "" {
		return unsafe.String(new(byte), 0)
	}
	return strings.Clone(s)
}

// Interface guards
var _ plugintypes.Action = distinctKeys{}
