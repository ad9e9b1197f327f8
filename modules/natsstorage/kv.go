package natsstorage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Settings configures a KV storage; zero fields take the defaults of the
// module's config (see NATS).
type Settings struct {
	Bucket    string
	Replicas  int
	LockTTL   time.Duration
	InlineMax int
	// Memory keeps the buckets in memory instead of on disk (tests).
	Memory bool
}

func (s *Settings) fillDefaults() {
	if s.Bucket == "" {
		s.Bucket = DefaultBucket
	}
	if s.Replicas == 0 {
		s.Replicas = 1
	}
	if s.LockTTL == 0 {
		s.LockTTL = DefaultLockTTL
	}
	if s.InlineMax == 0 {
		s.InlineMax = DefaultInlineMax
	}
}

// pointerMagic starts a KV value that points at an object in the object
// store. Values that start with it are never stored inline, so a value read
// from the KV bucket that starts with it is always a pointer.
var pointerMagic = []byte("\x00neo-nats-storage:object\x00")

type objectPointer struct {
	Object string `json:"object"`
	Size   int64  `json:"size"`
}

// KV is a certmagic.Storage on a NATS JetStream key-value bucket, with an
// object store for large values and a second key-value bucket, whose entries
// expire, for locks. It is safe for concurrent use.
type KV struct {
	js    jetstream.JetStream
	set   Settings
	log   *zap.Logger
	owner string

	bindMu sync.Mutex // serializes binding the buckets

	mu      sync.Mutex // guards the fields below
	b       *buckets
	held    map[string]*heldLock
	lockTTL time.Duration // the lock bucket's actual TTL, once bound
}

type buckets struct {
	kv        jetstream.KeyValue
	locks     jetstream.KeyValue
	objs      jetstream.ObjectStore
	inlineMax int // InlineMax, lowered to fit the server's max_payload
}

// payloadReserve is kept free of a max_payload for the message's subject and
// headers.
const payloadReserve = 4096

// NewKV returns a storage on the given JetStream context. Buckets are bound
// (created when missing) on first use, so it may be made while the NATS
// server is unreachable.
func NewKV(js jetstream.JetStream, set Settings, log *zap.Logger) *KV {
	set.fillDefaults()
	if log == nil {
		log = zap.NewNop()
	}
	host, _ := os.Hostname()
	return &KV{
		js:    js,
		set:   set,
		log:   log,
		owner: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), randomID()),
		held:  make(map[string]*heldLock),
	}
}

// String identifies the storage (certmagic logs it).
func (s *KV) String() string { return "nats:" + s.set.Bucket }

// LockBucket, ObjectBucket name the other buckets used beside Bucket.
func (s *KV) LockBucket() string   { return s.set.Bucket + "_locks" }
func (s *KV) ObjectBucket() string { return s.set.Bucket + "_large" }

func (s *KV) storageType() jetstream.StorageType {
	if s.set.Memory {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// buckets binds the buckets, creating them when missing.
func (s *KV) buckets(ctx context.Context) (*buckets, error) {
	s.mu.Lock()
	b := s.b
	s.mu.Unlock()
	if b != nil {
		return b, nil
	}
	s.bindMu.Lock()
	defer s.bindMu.Unlock()
	s.mu.Lock()
	b = s.b
	s.mu.Unlock()
	if b != nil {
		return b, nil
	}
	kv, err := s.bindKV(ctx, jetstream.KeyValueConfig{
		Bucket:      s.set.Bucket,
		Description: "caddy-neo certificate storage (caddy.storage.neo_nats)",
		History:     1,
		Replicas:    s.set.Replicas,
		Storage:     s.storageType(),
	})
	if err != nil {
		return nil, err
	}
	locks, err := s.bindKV(ctx, jetstream.KeyValueConfig{
		Bucket:      s.LockBucket(),
		Description: "caddy-neo certificate storage locks (caddy.storage.neo_nats)",
		History:     1,
		TTL:         s.set.LockTTL,
		Replicas:    s.set.Replicas,
		Storage:     s.storageType(),
	})
	if err != nil {
		return nil, err
	}
	st, err := locks.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", s.LockBucket(), err)
	}
	lockTTL := st.TTL()
	if lockTTL != s.set.LockTTL {
		s.log.Warn("lock bucket exists with another ttl; using it",
			zap.String("bucket", s.LockBucket()), zap.Duration("bucket_ttl", lockTTL), zap.Duration("lock_ttl", s.set.LockTTL))
	}
	if lockTTL <= 0 {
		return nil, fmt.Errorf("bucket %s: has no ttl, so locks of dead holders would never expire; delete it or give it a ttl", s.LockBucket())
	}
	objs, err := s.js.ObjectStore(ctx, s.ObjectBucket())
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		objs, err = s.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      s.ObjectBucket(),
			Description: "caddy-neo certificate storage, values over inline_max (caddy.storage.neo_nats)",
			Replicas:    s.set.Replicas,
			Storage:     s.storageType(),
		})
		if err != nil {
			objs, err = s.js.ObjectStore(ctx, s.ObjectBucket())
		}
	}
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", s.ObjectBucket(), err)
	}
	inlineMax := s.set.InlineMax
	if mp := s.js.Conn().MaxPayload(); mp > 0 && int64(inlineMax) > mp-payloadReserve {
		// a KV put of a larger value would be refused by the server
		inlineMax = int(mp - payloadReserve)
		s.log.Warn("inline_max above the server's max_payload; lowered",
			zap.Int("inline_max", s.set.InlineMax), zap.Int64("max_payload", mp), zap.Int("effective", inlineMax))
	}
	b = &buckets{kv: kv, locks: locks, objs: objs, inlineMax: inlineMax}
	s.mu.Lock()
	s.b, s.lockTTL = b, lockTTL
	s.mu.Unlock()
	return b, nil
}

func (s *KV) bindKV(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := s.js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = s.js.CreateKeyValue(ctx, cfg)
		if err != nil {
			// another edge may have created it meanwhile, with other settings
			if kv2, err2 := s.js.KeyValue(ctx, cfg.Bucket); err2 == nil {
				return kv2, nil
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// store puts value at key.
func (s *KV) store(ctx context.Context, key string, value []byte) error {
	enc, err := encodeKey(key)
	if err != nil {
		return err
	}
	b, err := s.buckets(ctx)
	if err != nil {
		return err
	}
	if len(value) > b.inlineMax || bytes.HasPrefix(value, pointerMagic) {
		if _, err := b.objs.PutBytes(ctx, enc, value); err != nil {
			return fmt.Errorf("storing %q in object store: %w", key, err)
		}
		ptr, _ := json.Marshal(objectPointer{Object: enc, Size: int64(len(value))})
		if _, err := b.kv.Put(ctx, enc, append(append([]byte{}, pointerMagic...), ptr...)); err != nil {
			return fmt.Errorf("storing %q: %w", key, err)
		}
		return nil
	}
	if createOnce(key) {
		return s.storeOnce(ctx, b, key, enc, value)
	}
	if _, err := b.kv.Put(ctx, enc, value); err != nil {
		return fmt.Errorf("storing %q: %w", key, err)
	}
	// a previous value of this key may have been large
	if _, err := b.objs.GetInfo(ctx, enc); err == nil {
		if err := b.objs.Delete(ctx, enc); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			s.log.Warn("deleting replaced large value", zap.String("key", key), zap.Error(err))
		}
	}
	return nil
}

// ErrCARootExists is returned by Store of an internal CA's root certificate
// or key that another instance stored first with another value.
var ErrCARootExists = errors.New("another instance created this CA's root first; restart to load it")

// createOnce reports whether key is an internal CA's root certificate or key.
// Caddy's pki app writes them only when storage has none, without a lock, so
// instances that start together on empty storage would each make a root and
// the last write would win while the others serve certificates from a root
// nobody else trusts. These keys are created, never overwritten: the losers
// fail to start (and load the winner's root when started again).
func createOnce(key string) bool {
	segs := segments(key)
	return len(segs) == 4 && segs[0] == "pki" && segs[1] == "authorities" && (segs[3] == "root.crt" || segs[3] == "root.key")
}

func (s *KV) storeOnce(ctx context.Context, b *buckets, key, enc string, value []byte) error {
	_, err := b.kv.Create(ctx, enc, value)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("storing %q: %w", key, err)
	}
	e, gerr := s.leaderGet(ctx, b.kv, enc)
	if gerr == nil && bytes.Equal(e.Value(), value) {
		return nil
	}
	s.log.Error("internal CA root created concurrently by another instance", zap.String("key", key))
	return fmt.Errorf("storing %q: %w", key, ErrCARootExists)
}

// get returns the entry of a file key, or fs.ErrNotExist.
func (s *KV) get(ctx context.Context, b *buckets, key, enc string) (jetstream.KeyValueEntry, error) {
	e, err := s.leaderGet(ctx, b.kv, enc)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, fmt.Errorf("%q: %w", key, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("loading %q: %w", key, err)
	}
	return e, nil
}

func pointerOf(v []byte) (objectPointer, bool) {
	var p objectPointer
	if !bytes.HasPrefix(v, pointerMagic) {
		return p, false
	}
	if err := json.Unmarshal(v[len(pointerMagic):], &p); err != nil || p.Object == "" {
		return p, false
	}
	return p, true
}

// load returns the value at key.
func (s *KV) load(ctx context.Context, key string) ([]byte, error) {
	enc, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	b, err := s.buckets(ctx)
	if err != nil {
		return nil, err
	}
	// A large value replaced while it is read shows as a size mismatch: read
	// the pointer again (bounded).
	for attempt := 0; ; attempt++ {
		e, err := s.get(ctx, b, key, enc)
		if err != nil {
			return nil, err
		}
		p, ok := pointerOf(e.Value())
		if !ok {
			return e.Value(), nil
		}
		v, err := b.objs.GetBytes(ctx, p.Object)
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			// deleted between the two reads
			return nil, fmt.Errorf("%q: %w", key, fs.ErrNotExist)
		}
		if err != nil {
			return nil, fmt.Errorf("loading %q from object store: %w", key, err)
		}
		if int64(len(v)) == p.Size {
			return v, nil
		}
		if attempt == 2 {
			return nil, fmt.Errorf("loading %q: object store holds %d bytes, want %d (replaced while read)", key, len(v), p.Size)
		}
	}
}

// keysUnder returns the KV keys strictly under the encoded prefix ("" is the
// root).
func (s *KV) keysUnder(ctx context.Context, b *buckets, encPrefix string) ([]string, error) {
	filter := ">"
	if encPrefix != "" {
		filter = encPrefix + ".>"
	}
	kl, err := b.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range kl.Keys() {
		keys = append(keys, k)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return keys, nil
}

// delete deletes key and everything under it.
func (s *KV) delete(ctx context.Context, key string) error {
	enc, err := encodeKey(key)
	if err != nil {
		return err
	}
	b, err := s.buckets(ctx)
	if err != nil {
		return err
	}
	under, err := s.keysUnder(ctx, b, enc)
	if err != nil {
		return fmt.Errorf("deleting %q: listing: %w", key, err)
	}
	var errs []error
	for _, k := range append(under, enc) {
		e, err := s.leaderGet(ctx, b.kv, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := b.kv.Purge(ctx, k, jetstream.LastRevision(e.Revision())); err != nil {
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				// written meanwhile: that write wins, as if it came after the delete
				continue
			}
			errs = append(errs, err)
			continue
		}
		if p, ok := pointerOf(e.Value()); ok {
			if err := b.objs.Delete(ctx, p.Object); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("deleting %q: %w", key, err)
	}
	return nil
}

// Store puts value at key.
func (s *KV) Store(ctx context.Context, key string, value []byte) error {
	err := s.store(ctx, key, value)
	s.count("store", err)
	return err
}

// Load returns the value at key, or an error wrapping fs.ErrNotExist.
func (s *KV) Load(ctx context.Context, key string) ([]byte, error) {
	v, err := s.load(ctx, key)
	s.count("load", err)
	return v, err
}

// Delete deletes key and everything under it; a missing key is no error.
func (s *KV) Delete(ctx context.Context, key string) error {
	err := s.delete(ctx, key)
	s.count("delete", err)
	return err
}

// Stat describes key: a file (IsTerminal) or a directory (a prefix of files).
func (s *KV) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	ki, err := s.stat(ctx, key)
	s.count("stat", err)
	return ki, err
}

// List returns the keys under prefix (see list).
func (s *KV) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	keys, err := s.list(ctx, prefix, recursive)
	s.count("list", err)
	return keys, err
}

// Exists reports whether key is a file or a directory.
func (s *KV) Exists(ctx context.Context, key string) bool {
	_, err := s.Stat(ctx, key)
	return err == nil
}

// stat describes key.
func (s *KV) stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	enc, err := encodeKey(key)
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	b, err := s.buckets(ctx)
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	e, err := s.get(ctx, b, key, enc)
	if err == nil {
		size := int64(len(e.Value()))
		if p, ok := pointerOf(e.Value()); ok {
			size = p.Size
		}
		return certmagic.KeyInfo{Key: key, Modified: e.Created(), Size: size, IsTerminal: true}, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return certmagic.KeyInfo{}, err
	}
	under, err := s.keysUnder(ctx, b, enc)
	if err != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("stat %q: %w", key, err)
	}
	if len(under) == 0 {
		return certmagic.KeyInfo{}, fmt.Errorf("%q: %w", key, fs.ErrNotExist)
	}
	return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
}

// list returns the keys under prefix, as FileStorage does: the files and
// directories directly in it, or with recursive every file and directory
// below it, each as prefix + "/" + the rest. A prefix with nothing under it
// is fs.ErrNotExist, unless it is a file (then the list is empty).
func (s *KV) list(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	canon := canonicalKey(prefix)
	enc := ""
	if canon != "" {
		var err error
		if enc, err = encodeKey(canon); err != nil {
			return nil, err
		}
	}
	b, err := s.buckets(ctx)
	if err != nil {
		return nil, err
	}
	under, err := s.keysUnder(ctx, b, enc)
	if err != nil {
		return nil, fmt.Errorf("listing %q: %w", prefix, err)
	}
	if len(under) == 0 {
		if canon != "" {
			if _, err := s.get(ctx, b, canon, enc); err == nil {
				return []string{}, nil
			}
		}
		return nil, fmt.Errorf("listing %q: %w", prefix, fs.ErrNotExist)
	}
	seen := make(map[string]struct{})
	for _, k := range under {
		full, err := decodeKey(k)
		if err != nil {
			s.log.Warn("skipping foreign key in storage bucket", zap.String("bucket", s.set.Bucket), zap.String("kv_key", k))
			continue
		}
		rest := full
		if canon != "" {
			rest = strings.TrimPrefix(full, canon+"/")
		}
		parts := strings.Split(rest, "/")
		if !recursive {
			parts = parts[:1]
		}
		base := canon
		for _, p := range parts {
			if base == "" {
				base = p
			} else {
				base += "/" + p
			}
			seen[base] = struct{}{}
		}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}

// leaderGet is KeyValue.Get answered by the bucket stream's leader.
//
// KV buckets allow direct gets, which every replica of an R3 bucket answers
// as soon as it is nearly caught up: a replica that has not applied the
// latest write yet answers with the value before it. certmagic requires
// Load to return the value of the last Store, so reads go through
// $JS.API.STREAM.MSG.GET, which only the leader answers, after every write
// it acknowledged. (Listings use a consumer and remain eventually
// consistent.)
func (s *KV) leaderGet(ctx context.Context, kv jetstream.KeyValue, key string) (jetstream.KeyValueEntry, error) {
	bucket := kv.Bucket()
	req, _ := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{"$KV." + bucket + "." + key})
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	m, err := s.js.Conn().RequestWithContext(ctx, s.apiPrefix()+"STREAM.MSG.GET.KV_"+bucket, req)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Subject  string    `json:"subject"`
			Sequence uint64    `json:"seq"`
			Header   []byte    `json:"hdrs"`
			Data     []byte    `json:"data"`
			Time     time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return nil, fmt.Errorf("reading %s: bad response: %w", key, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound) {
			return nil, jetstream.ErrKeyNotFound
		}
		return nil, fmt.Errorf("reading %s: %s (code %d, error code %d)", key, resp.Error.Description, resp.Error.Code, resp.Error.ErrCode)
	}
	if resp.Message == nil {
		return nil, fmt.Errorf("reading %s: %w", key, jetstream.ErrInvalidJetStreamResponse)
	}
	e := &entry{bucket: bucket, key: key, value: resp.Message.Data, revision: resp.Message.Sequence, created: resp.Message.Time, op: jetstream.KeyValuePut}
	if len(resp.Message.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Header)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", key, err)
		}
		switch {
		case h.Get("KV-Operation") == "DEL":
			e.op = jetstream.KeyValueDelete
		case h.Get("KV-Operation") == "PURGE", h.Get(jetstream.MarkerReasonHeader) != "":
			e.op = jetstream.KeyValuePurge
		}
	}
	if e.op != jetstream.KeyValuePut {
		return nil, jetstream.ErrKeyDeleted
	}
	return e, nil
}

// apiPrefix is the JetStream API prefix of s.js, ending in a dot.
func (s *KV) apiPrefix() string {
	o := s.js.Options()
	switch {
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	}
	return "$JS.API."
}

// entry is a jetstream.KeyValueEntry read by leaderGet.
type entry struct {
	bucket, key string
	value       []byte
	revision    uint64
	created     time.Time
	op          jetstream.KeyValueOp
}

func (e *entry) Bucket() string                  { return e.bucket }
func (e *entry) Key() string                     { return e.key }
func (e *entry) Value() []byte                   { return e.value }
func (e *entry) Revision() uint64                { return e.revision }
func (e *entry) Created() time.Time              { return e.created }
func (e *entry) Delta() uint64                   { return 0 }
func (e *entry) Operation() jetstream.KeyValueOp { return e.op }
