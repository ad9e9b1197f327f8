package natskv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/projectneo/caddy-neo/modules/neo"
)

// Operations of a Record.
const (
	OpPut    = "put"
	OpDelete = "delete"
)

// MaxValue bounds a bucket value this store decodes (the admin API's own
// body limit, plus room for the record).
const MaxValue = neo.MaxAdminBody + 4096

// Record is the value of a tenant's key: what changed, who changed it, when.
type Record struct {
	// Op is "put" or "delete".
	Op string `json:"op"`
	// Tenant is the tenant's configuration (put only).
	Tenant *neo.TenantConfig `json:"tenant,omitempty"`
	// Who made the change.
	Who *neo.Author `json:"who,omitempty"`
	// When the accepting node made the change.
	When time.Time `json:"when,omitzero"`
}

// EncodeValue encodes a record.
func EncodeValue(r *Record) ([]byte, error) {
	return json.Marshal(r)
}

// DecodeValue decodes a bucket value, which is untrusted input (anyone with
// write access to the bucket can put anything there): a Record, or a plain
// tenant object (as `nats kv put` would write), decoded strictly. It does not
// validate the tenant's content (the registry compiles it).
func DecodeValue(data []byte) (*Record, error) {
	if len(data) > MaxValue {
		return nil, fmt.Errorf("value: %d bytes, larger than %d", len(data), MaxValue)
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil || probe == nil {
		return nil, errors.New("value: not a JSON object")
	}
	if _, isRecord := probe["op"]; !isRecord {
		tc, err := neo.ParseTenant(data)
		if err != nil {
			return nil, fmt.Errorf("tenant: %w", err)
		}
		return &Record{Op: OpPut, Tenant: tc}, nil
	}
	r := new(Record)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(r); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	if dec.More() {
		return nil, errors.New("record: trailing data")
	}
	switch r.Op {
	case OpPut:
		if r.Tenant == nil {
			return nil, errors.New("record: put without tenant")
		}
	case OpDelete:
		if r.Tenant != nil {
			return nil, errors.New("record: delete with a tenant")
		}
	default:
		return nil, fmt.Errorf("record: unknown op %q", r.Op)
	}
	return r, nil
}
