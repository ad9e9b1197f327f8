package edgewaf

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
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
// takes it by transaction id, so a blocked request is logged as the access
// log line that carries these fields (neo.ReportWAF; not one line per
// matched rule). When SecAuditLog names a target other than /dev/null, the
// writer also writes the audit record there in SecAuditLogFormat, one line
// per record (for example neo_json, with credentials as fingerprints).
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
	plugins.RegisterAuditLogWriter("neo", func() plugintypes.AuditLogWriter { return &auditWriter{} })
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
type auditWriter struct {
	mu        sync.Mutex
	out       io.Writer // nil: records are not written
	file      *os.File  // opened by Init, closed by Close
	formatter plugintypes.AuditLogFormatter
}

// Init opens the record target, if any: SecAuditLog /dev/stdout,
// /dev/stderr or a file (appended to, created with SecAuditLogFileMode);
// none, or /dev/null, writes no records.
func (w *auditWriter) Init(c plugintypes.AuditLogConfig) error {
	w.formatter = c.Formatter
	switch c.Target {
	case "", "/dev/null":
	case "/dev/stdout":
		w.out = os.Stdout
	case "/dev/stderr":
		w.out = os.Stderr
	default:
		mode := c.FileMode
		if mode == 0 {
			mode = 0o600
		}
		f, err := os.OpenFile(c.Target, os.O_WRONLY|os.O_APPEND|os.O_CREATE, mode)
		if err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
		w.file, w.out = f, f
	}
	if w.out != nil && w.formatter == nil {
		return errors.New("audit log: SecAuditLog needs a SecAuditLogFormat")
	}
	return nil
}

// Close closes the record file.
func (w *auditWriter) Close() error {
	if w.file != nil {
		return w.file.Close()
	}
	return nil
}

// Write keeps the transaction's outcome for neo_waf and writes the record
// to the target, if any.
func (w *auditWriter) Write(al plugintypes.AuditLog) error {
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
	if w.out == nil {
		return nil
	}
	rec, err := w.formatter.Format(al)
	if err != nil {
		return err
	}
	if len(rec) == 0 || rec[len(rec)-1] != '\n' {
		rec = append(rec, '\n')
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err = w.out.Write(rec)
	return err
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
