// Package natskv is the `neo.stores.nats` module: the registry's run-time
// tenants in a NATS JetStream key-value bucket shared by every edge and stage
// gateway. Any node's admin API writes to the bucket; every node watches it
// and applies each change to its registry; a node starting up loads the
// bucket; the bucket's per-key history is the audit trail of tenant changes
// (who, when, what), served by the admin API at /neo/tenants/{t}/history.
//
// One key per tenant (the tenant name); each value is a JSON record
// {"op":"put","tenant":{...},"who":{...},"when":"..."}. A delete is a KV
// delete marker whose body is the record {"op":"delete","who":...,"when":...},
// so the history also tells who deleted. Plain tenant JSON written by other
// tools (`nats kv put neo_tenants acme '{"apps":...}'`) is accepted too.
package natskv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/projectneo/caddy-neo/modules/natsconn"
	"github.com/projectneo/caddy-neo/modules/neo"
)

func init() {
	caddy.RegisterModule(Store{})
}

// MaxHistory is the largest per-key history a JetStream KV bucket keeps.
const MaxHistory = 64

// loadTimeout bounds loading the whole bucket at start.
const loadTimeout = 30 * time.Second

// Store keeps run-time tenants in a JetStream key-value bucket.
type Store struct {
	// Connection is the name of the `nats` app connection to use.
	// Default: "default".
	Connection string `json:"connection,omitempty"`
	// Bucket is the KV bucket's name (letters, digits, '-', '_'); created
	// if missing, its replicas and history updated if they differ.
	// Default: "neo_tenants".
	Bucket string `json:"bucket,omitempty"`
	// Replicas is the bucket's replication factor (1 to 5; 3 in production
	// clusters). Default: 1.
	Replicas int `json:"replicas,omitempty"`
	// HistoryDepth is how many revisions of each tenant the bucket keeps: the
	// depth of the audit trail (1 to 64). Default: 64.
	HistoryDepth int `json:"history,omitempty"`
	// Timeout bounds each write and history read. Default: 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Node names this node in the audit trail. Default: the host name.
	Node string `json:"node,omitempty"`

	nc     *nats.Conn
	js     jetstream.JetStream
	logger *zap.Logger
	mu     *sync.Mutex
	kv     jetstream.KeyValue
}

// CaddyModule returns the Caddy module information.
func (Store) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "neo.stores.nats",
		New: func() caddy.Module { return new(Store) },
	}
}

// Provision fills defaults and takes the shared NATS connection. The bucket
// is created on first use (Load, at the neo app's Provision).
func (s *Store) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	s.mu = new(sync.Mutex)
	if s.Connection == "" {
		s.Connection = natsconn.DefaultConnection
	}
	if s.Bucket == "" {
		s.Bucket = "neo_tenants"
	}
	if s.Replicas == 0 {
		s.Replicas = 1
	}
	if s.HistoryDepth == 0 {
		s.HistoryDepth = MaxHistory
	}
	if s.Timeout == 0 {
		s.Timeout = caddy.Duration(5 * time.Second)
	}
	if s.Node == "" {
		s.Node, _ = os.Hostname()
	}
	if err := s.Validate(); err != nil {
		return err
	}
	nc, err := natsconn.Conn(ctx, s.Connection)
	if err != nil {
		return fmt.Errorf("connection: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("connection: %w", err)
	}
	s.nc, s.js = nc, js
	return nil
}

// Validate checks the configuration.
func (s *Store) Validate() error {
	if !validBucket(s.Bucket) {
		return fmt.Errorf("bucket: %q: want letters, digits, '-' or '_'", s.Bucket)
	}
	if s.Replicas < 1 || s.Replicas > 5 {
		return fmt.Errorf("replicas: %d: want 1 to 5", s.Replicas)
	}
	if s.HistoryDepth < 1 || s.HistoryDepth > MaxHistory {
		return fmt.Errorf("history: %d: want 1 to %d", s.HistoryDepth, MaxHistory)
	}
	if s.Timeout < 0 {
		return errors.New("timeout: must not be negative")
	}
	return nil
}

func validBucket(b string) bool {
	if b == "" || len(b) > 64 {
		return false
	}
	for _, r := range b {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// bucket returns the KV bucket, creating or updating it on first use.
func (s *Store) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kv != nil {
		return s.kv, nil
	}
	if err := s.connected(); err != nil {
		return nil, err
	}
	kv, err := s.js.KeyValue(ctx, s.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = s.js.CreateKeyValue(ctx, s.config())
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = s.js.KeyValue(ctx, s.Bucket) // another node won the race
		}
		if err == nil {
			s.logger.Info("created tenant bucket", zap.String("bucket", s.Bucket), zap.Int("replicas", s.Replicas), zap.Int("history", s.HistoryDepth))
		}
	} else if err == nil {
		s.reconcile(kv)
	}
	if err != nil {
		return nil, s.unavailable(fmt.Errorf("bucket %s: %w", s.Bucket, err))
	}
	s.kv = kv
	return kv, nil
}

func (s *Store) config() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      s.Bucket,
		Description: "caddy-neo run-time tenants (neo.stores.nats)",
		History:     uint8(s.HistoryDepth),
		Replicas:    s.Replicas,
		Storage:     jetstream.FileStorage,
	}
}

// reconcile updates an existing bucket's history and replicas to this
// store's configuration. A node without the permission to update streams
// (a read-only gateway) uses the bucket as it is.
func (s *Store) reconcile(kv jetstream.KeyValue) {
	ctx, cancel := s.timeout() // not the caller's: a refused update must not use up a load's time
	defer cancel()
	st, err := kv.Status(ctx)
	if err != nil {
		return
	}
	info := st.(*jetstream.KeyValueBucketStatus).StreamInfo()
	if info.Config.MaxMsgsPerSubject == int64(s.HistoryDepth) && info.Config.Replicas == s.Replicas {
		return
	}
	if _, err := s.js.UpdateKeyValue(ctx, s.config()); err != nil {
		s.logger.Warn("tenant bucket differs from the configuration and could not be updated; using it as it is",
			zap.String("bucket", s.Bucket), zap.Int64("history", info.Config.MaxMsgsPerSubject), zap.Int("replicas", info.Config.Replicas),
			zap.Error(err))
		return
	}
	s.logger.Info("updated tenant bucket", zap.String("bucket", s.Bucket), zap.Int("replicas", s.Replicas), zap.Int("history", s.HistoryDepth))
}

func (s *Store) connected() error {
	if !s.nc.IsConnected() {
		return fmt.Errorf("%w: nats connection %q is %s", neo.ErrStoreUnavailable, s.Connection, s.nc.Status())
	}
	return nil
}

// unavailable marks errors of an unreachable NATS or JetStream.
func (s *Store) unavailable(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.Is(err, nats.ErrDisconnected) || !s.nc.IsConnected() {
		return fmt.Errorf("%w: %w", neo.ErrStoreUnavailable, err)
	}
	return err
}

func (s *Store) timeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), time.Duration(s.Timeout))
}

// Load reads the current value of every tenant of the bucket. A value that
// cannot be decoded is logged and skipped.
func (s *Store) Load() (map[string]*neo.TenantConfig, error) {
	ctx, cancel := context.WithTimeout(context.Background(), max(loadTimeout, time.Duration(s.Timeout)))
	defer cancel()
	kv, err := s.bucket(ctx)
	if err != nil {
		return nil, err
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, s.unavailable(err)
	}
	defer w.Stop()
	out := map[string]*neo.TenantConfig{}
	for {
		select {
		case <-ctx.Done():
			return nil, s.unavailable(fmt.Errorf("loading bucket %s: %w", s.Bucket, ctx.Err()))
		case e, ok := <-w.Updates():
			if !ok {
				return nil, s.unavailable(fmt.Errorf("loading bucket %s: watch closed", s.Bucket))
			}
			if e == nil {
				return out, nil
			}
			if c, ok := s.change(e); ok && c.Tenant != nil {
				out[c.Name] = c.Tenant
			}
		}
	}
}

// change decodes an entry; false when it is skipped (logged).
func (s *Store) change(e jetstream.KeyValueEntry) (neo.Change, bool) {
	c := neo.Change{Name: e.Key(), Revision: e.Revision()}
	if !neo.ValidLabel(c.Name) {
		s.logger.Warn("stored tenant skipped", zap.String("tenant", c.Name), zap.Uint64("revision", c.Revision),
			zap.String("reason", "key is not a valid tenant name"))
		return c, false
	}
	if e.Operation() != jetstream.KeyValuePut {
		return c, true
	}
	rec, err := DecodeValue(e.Value())
	if err != nil {
		s.logger.Warn("stored tenant skipped", zap.String("tenant", c.Name), zap.Uint64("revision", c.Revision),
			zap.String("reason", err.Error()))
		return c, false
	}
	c.Tenant = rec.Tenant
	return c, true
}

// Watch reports the bucket's tenants, then its changes, until ctx ends.
// After a NATS reconnect it resumes from the revision after the last one it
// reported (the server may have lost the watch's ephemeral consumer, which
// the client would otherwise notice only after missed heartbeats, ~15 s).
func (s *Store) Watch(ctx context.Context, apply func(neo.Change)) error {
	bctx, cancel := s.timeout()
	kv, err := s.bucket(bctx)
	cancel()
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return s.unavailable(err)
	}
	defer func() {
		if w == nil {
			return
		}
		if s.nc.IsConnected() {
			w.Stop()
			return
		}
		// Stopping deletes the watch's consumer, a request that would wait
		// for the JetStream API timeout while NATS is unreachable: do it in
		// the background (bounded by that timeout) so that a reload or
		// shutdown does not wait. The server drops the ephemeral consumer
		// by itself anyway.
		go w.Stop()
	}()
	var last uint64
	readySent := false
	reconnects := s.nc.Stats().Reconnects
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		var updates <-chan jetstream.KeyValueEntry
		if w != nil {
			updates = w.Updates()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			n := s.nc.Stats().Reconnects
			if n == reconnects || !s.nc.IsConnected() {
				continue
			}
			if w != nil {
				go w.Stop() // the old consumer may be gone with the old server: don't wait on it
				w = nil
			}
			opts := []jetstream.WatchOpt{jetstream.IncludeHistory()}
			if last > 0 {
				opts = append(opts, jetstream.ResumeFromRevision(last+1))
			}
			nw, err := kv.WatchAll(ctx, opts...)
			if err != nil {
				s.logger.Debug("resuming tenant watch after reconnect", zap.Error(err))
				continue // JetStream may still be recovering: next tick
			}
			w, reconnects = nw, n
			s.logger.Info("tenant watch resumed after nats reconnect", zap.Uint64("from_revision", last+1))
		case e, ok := <-updates:
			if !ok {
				if ctx.Err() != nil {
					return nil // closed because ctx ended
				}
				return fmt.Errorf("watching bucket %s: watch closed", s.Bucket)
			}
			if e == nil {
				if !readySent {
					readySent = true
					apply(neo.Change{Ready: true})
				}
				continue
			}
			if readySent && e.Revision() <= last {
				continue // already reported before a resume
			}
			last = max(last, e.Revision())
			if c, ok := s.change(e); ok {
				apply(c)
			}
		}
	}
}

// Put writes a tenant (no author).
func (s *Store) Put(name string, t *neo.TenantConfig) error {
	return s.PutBy(name, t, neo.Author{})
}

// Delete deletes a tenant (no author).
func (s *Store) Delete(name string) error {
	return s.DeleteBy(name, neo.Author{})
}

// write is a change ready to send: its encoded record, the bucket and the
// deadline of the call.
type write struct {
	data   []byte
	kv     jetstream.KeyValue
	ctx    context.Context
	cancel context.CancelFunc
}

// prepare validates the name, stamps and encodes the record, binds the
// bucket and fails fast when NATS is not connected: a write never waits in
// the reconnect buffer. The caller must call cancel.
func (s *Store) prepare(name string, rec *Record) (*write, error) {
	if !neo.ValidLabel(name) {
		return nil, fmt.Errorf("invalid tenant name %q", name)
	}
	rec.Who.Node = s.Node
	rec.When = time.Now().UTC()
	data, err := EncodeValue(rec)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.timeout()
	kv, err := s.bucket(ctx)
	if err == nil {
		err = s.connected()
	}
	if err != nil {
		cancel()
		return nil, err
	}
	return &write{data: data, kv: kv, ctx: ctx, cancel: cancel}, nil
}

// PutBy writes the tenant's record, waiting for JetStream's acknowledgement.
func (s *Store) PutBy(name string, t *neo.TenantConfig, who neo.Author) error {
	w, err := s.prepare(name, &Record{Op: OpPut, Tenant: t, Who: &who})
	if err != nil {
		return err
	}
	defer w.cancel()
	if _, err := w.kv.Put(w.ctx, name, w.data); err != nil {
		return s.unavailable(fmt.Errorf("put %s: %w", name, err))
	}
	return nil
}

// PutIfUnchanged writes the tenant only if the bucket's current value is
// prev (JetStream's expected-last-sequence check makes it atomic).
func (s *Store) PutIfUnchanged(name string, prev, t *neo.TenantConfig, who neo.Author) error {
	w, err := s.prepare(name, &Record{Op: OpPut, Tenant: t, Who: &who})
	if err != nil {
		return err
	}
	defer w.cancel()
	ctx, kv, data := w.ctx, w.kv, w.data
	e, err := kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("tenant %q was deleted: %w", name, neo.ErrConflict)
	}
	if err != nil {
		return s.unavailable(fmt.Errorf("get %s: %w", name, err))
	}
	rec, err := DecodeValue(e.Value())
	if err != nil || rec.Tenant == nil || !neo.SameConfig(rec.Tenant, prev) {
		return fmt.Errorf("tenant %q is at revision %d: %w", name, e.Revision(), neo.ErrConflict)
	}
	if _, err := kv.Update(ctx, name, data, e.Revision()); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("tenant %q changed after revision %d: %w", name, e.Revision(), neo.ErrConflict)
		}
		return s.unavailable(fmt.Errorf("update %s: %w", name, err))
	}
	return nil
}

// DeleteBy writes a delete marker carrying who deleted the tenant.
func (s *Store) DeleteBy(name string, who neo.Author) error {
	w, err := s.prepare(name, &Record{Op: OpDelete, Who: &who})
	if err != nil {
		return err
	}
	defer w.cancel()
	ctx, data := w.ctx, w.data
	// What kv.Delete publishes, with a body: the KV-Operation header makes
	// it a delete marker for every KV client.
	m := nats.NewMsg("$KV." + s.Bucket + "." + name)
	m.Header.Set("KV-Operation", "DEL")
	m.Data = data
	if _, err := s.js.PublishMsg(ctx, m); err != nil {
		return s.unavailable(fmt.Errorf("delete %s: %w", name, err))
	}
	return nil
}

// History returns the tenant's revisions kept by the bucket, oldest first.
func (s *Store) History(name string) ([]neo.HistoryEntry, error) {
	if !neo.ValidLabel(name) {
		return nil, fmt.Errorf("tenant %q: %w", name, neo.ErrNotFound)
	}
	ctx, cancel := s.timeout()
	defer cancel()
	kv, err := s.bucket(ctx)
	if err != nil {
		return nil, err
	}
	entries, err := kv.History(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("history of tenant %q: %w", name, neo.ErrNotFound)
	}
	if err != nil {
		return nil, s.unavailable(fmt.Errorf("history %s: %w", name, err))
	}
	out := make([]neo.HistoryEntry, 0, len(entries))
	for _, e := range entries {
		out = append(out, historyEntry(e))
	}
	return out, nil
}

func historyEntry(e jetstream.KeyValueEntry) neo.HistoryEntry {
	h := neo.HistoryEntry{Revision: e.Revision(), Stored: e.Created().UTC()}
	switch e.Operation() {
	case jetstream.KeyValuePut:
		h.Operation = "PUT"
	case jetstream.KeyValueDelete:
		h.Operation = "DEL"
	default:
		h.Operation = "PURGE"
	}
	if len(e.Value()) == 0 {
		return h
	}
	rec, err := DecodeValue(e.Value())
	if err != nil {
		h.Error = err.Error()
		return h
	}
	h.When, h.Who = rec.When, rec.Who
	if e.Operation() == jetstream.KeyValuePut {
		h.Tenant = rec.Tenant
	}
	return h
}

// Interface guards
var (
	_ caddy.Provisioner = (*Store)(nil)
	_ caddy.Validator   = (*Store)(nil)
	_ neo.Store         = (*Store)(nil)
	_ neo.AuthoredStore = (*Store)(nil)
	_ neo.Watcher       = (*Store)(nil)
	_ neo.Historian     = (*Store)(nil)

	_ neo.ConditionalStore = (*Store)(nil)
)
