// Package wafcontent is the edge WAF's content-aware inspection: the Coraza
// action neoContent (registered by importing this package; the edge's
// neo_waf does) rewrites GraphQL documents and data: URLs in the request
// arguments into what they carry, before the CRS reads them.
package wafcontent

import (
	"regexp"
	"strings"
	"unsafe"

	"github.com/corazawaf/coraza/v3/collection"
	"github.com/corazawaf/coraza/v3/experimental/plugins"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	"github.com/corazawaf/coraza/v3/types"
)

// Content-aware inspection: the Coraza action neoContent rewrites the
// request arguments the CRS inspects into what the app receives as data,
// before the CRS runs:
//
//   - a GraphQL document (the `query` of a JSON body, of each operation of a
//     batch, or of a GET query string) becomes the text it carries as data:
//     its string literals and comments, one argument value each
//     (graphql.go); its structure (`user(id: $id) { ... { node { ...`,
//     `$input`) is checked by the GraphQL server against its schema and no
//     longer reads as SQL or shell to the CRS. The variables are JSON and
//     already arguments of their own. A value that is not a valid GraphQL
//     executable document is left as it is;
//   - data: URLs are decoded (dataurl.go).
//
// The edge runs it first in phases 1 (query string) and 2 (body):
//
//	SecAction "id:900960,phase:1,pass,nolog,neoContent"
//	SecAction "id:900961,phase:2,pass,nolog,neoContent"
//
// Rewritten values get key strings of their own memory (see
// wafaccel.DistinctKeysDirectives: Coraza caches transformed values by key
// string).

func init() {
	plugins.RegisterAction("neocontent", func() plugintypes.Action { return contentAction{} })
}

type contentAction struct{}

func (contentAction) Init(plugintypes.RuleMetadata, string) error { return nil }
func (contentAction) Type() plugintypes.ActionType                { return plugintypes.ActionTypeNondisruptive }

func (contentAction) Evaluate(_ plugintypes.RuleMetadata, tx plugintypes.TransactionState) {
	v := tx.Variables()
	if tx.LastPhase() == types.PhaseRequestHeaders {
		rewriteArgs(v.ArgsGet(), isGraphQLGETKey)
		return
	}
	rewriteArgs(v.ArgsPost(), isGraphQLJSONKey)
}

func isGraphQLGETKey(k string) bool { return k == "query" }

// isGraphQLJSONKey: json.query, or json.N.query in a batch.
func isGraphQLJSONKey(k string) bool {
	if k == "json.query" {
		return true
	}
	mid, ok := strings.CutPrefix(k, "json.")
	if !ok {
		return false
	}
	mid, ok = strings.CutSuffix(mid, ".query")
	if !ok || mid == "" {
		return false
	}
	for i := 0; i < len(mid); i++ {
		if mid[i] < '0' || mid[i] > '9' {
			return false
		}
	}
	return true
}

// contentValues returns what is inspected in place of the value v of key
// k; ok is false when v is left as it is.
func contentValues(k, v string, graphQLKey func(string) bool) ([]string, bool) {
	if graphQLKey(k) {
		if lits, ok := graphQLArguments(v); ok {
			if len(lits) == 0 {
				lits = []string{""}
			}
			return lits, true
		}
	}
	if !strings.Contains(v, "ata:") && !strings.Contains(v, "ATA:") {
		return nil, false
	}
	if d, ok := decodeDataURL(v); ok {
		return []string{d}, true
	}
	if r, ok := replaceEmbeddedImages(v); ok {
		return []string{r}, true
	}
	return nil, false
}

var emptyKey = regexp.MustCompile(`^$`)

// rewriteArgs rewrites the values of col that contentValues changes.
func rewriteArgs(col collection.Map, graphQLKey func(string) bool) {
	if col == nil {
		return
	}
	var todo []string
	for _, md := range col.FindAll() {
		if _, ok := contentValues(md.Key(), md.Value(), graphQLKey); ok {
			todo = append(todo, md.Key())
		}
	}
	done := map[string]bool{}
	for _, k := range todo {
		if done[k] {
			continue
		}
		done[k] = true
		var slot []types.MatchData
		if k == "" {
			slot = col.FindRegex(emptyKey)
		} else {
			slot = col.FindString(k)
		}
		var extra []string
		for i, md := range slot {
			vals, ok := contentValues(md.Key(), md.Value(), graphQLKey)
			if !ok {
				continue
			}
			col.SetIndex(ownKey(md.Key()), i, vals[0])
			extra = append(extra, vals[1:]...)
		}
		for _, e := range extra {
			col.Add(ownKey(k), e)
		}
	}
}

// ownKey returns s in memory of its own.
func ownKey(s string) string {
	if s == "" {
		return unsafe.String(new(byte), 0)
	}
	return strings.Clone(s)
}

// Interface guards
var _ plugintypes.Action = contentAction{}
