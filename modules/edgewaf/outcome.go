package edgewaf

import (
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/corazawaf/coraza/v3/experimental/plugins"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"

	"github.com/projectneo/caddy-neo/modules/neo"
)

// The WAF's outcome for each request, published by neo_waf as placeholders
// for the access log (neo_access) and other handlers:
//
//	{neo.waf.outcome}  pass, matched (rules matched, the request went on:
//	                   detection-only, or below the anomaly threshold) or
//	                   blocked
//	{neo.waf.rules}    the ids of the rules that matched, space-separated
//	                   (for example "942100 949110"), when any did
//
// Coraza reports matched rules to its audit log. The edge's rules send that
// log, with part K (the matched rules), to the `neo` audit log writer
// registered here (SecAuditLogType neo, SecAuditLogParts AKZ),
// which keeps each transaction's outcome until neo_waf, in the same request,
// takes it by transaction id: nothing is written anywhere else, so a blocked
// request is logged once, as the access log line that carries these fields
// (neo.ReportWAF; not one line per matched rule, and no record on stdout).
const (
	PlaceholderOutcome = "neo.waf.outcome"
	PlaceholderRules   = "neo.waf.rules"
)

// Outcomes.
const (
	OutcomePass    = "pass"
	OutcomeMatched = "matched"
	OutcomeBlocked = "blocked"
)

func init() {
	plugins.RegisterAuditLogWriter("neo", func() plugintypes.AuditLogWriter { return auditWriter{} })
}

// outcome is what the audit log told of one transaction.
type outcome struct {
	blocked bool
	rules   string
}

// outcomes holds the outcomes Coraza reported and neo_waf has not taken yet:
// neo_waf takes each in the request that produced it, so it stays small; the
// bound only matters for a config that uses the writer without neo_waf.
var outcomes = struct {
	sync.Mutex
	m map[string]outcome
}{m: map[string]outcome{}}

const maxOutcomes = 4096

// auditWriter is Coraza's `neo` audit log writer.
type auditWriter struct{}

func (auditWriter) Init(plugintypes.AuditLogConfig) error { return nil }
func (auditWriter) Close() error                          { return nil }

// Write keeps the transaction's outcome for neo_waf.
func (auditWriter) Write(al plugintypes.AuditLog) error {
	tx := al.Transaction()
	if tx == nil {
		return nil
	}
	var ids []string
	for _, m := range al.Messages() {
		// Messages carry the rule's data only with audit log part K
		// (SecAuditLogParts); without, Data is a nil pointer.
		d := m.Data()
		if d == nil || reflect.ValueOf(d).Kind() == reflect.Pointer && reflect.ValueOf(d).IsNil() || d.ID() == 0 {
			continue
		}
		{
			id := strconv.Itoa(d.ID())
			if !contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	o := outcome{blocked: tx.IsInterrupted(), rules: strings.Join(ids, " ")}
	outcomes.Lock()
	if len(outcomes.m) < maxOutcomes {
		outcomes.m[tx.ID()] = o
	}
	outcomes.Unlock()
	return nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// takeOutcome removes and returns the outcome reported for transaction id.
func takeOutcome(id string) (outcome, bool) {
	outcomes.Lock()
	o, ok := outcomes.m[id]
	if ok {
		delete(outcomes.m, id)
	}
	outcomes.Unlock()
	return o, ok
}

// publishOutcome sets the outcome placeholders after the WAF ran. blocked
// is what the WAF's handler returned (an interruption), in case the audit
// log was off.
func publishOutcome(r *http.Request, repl *caddy.Replacer, blocked bool) {
	id, _ := repl.GetString("http.transaction_id")
	o, ok := outcome{}, false
	if id != "" {
		o, ok = takeOutcome(id)
	}
	res := OutcomePass
	switch {
	case blocked || o.blocked:
		res = OutcomeBlocked
	case ok && o.rules != "":
		res = OutcomeMatched
	}
	repl.Set(PlaceholderOutcome, res)
	if o.rules != "" {
		repl.Set(PlaceholderRules, o.rules)
	}
	neo.ReportWAF(r, res, o.rules)
}
