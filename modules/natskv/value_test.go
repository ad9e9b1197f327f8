package natskv

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/projectneo/caddy-neo/modules/neo"
)

func TestDecodeValue(t *testing.T) {
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rec := &Record{Op: OpPut, Tenant: tenant("10.0.0.1:80"), Who: &neo.Author{Actor: "alice", Node: "n1"}, When: when}
	data, err := EncodeValue(rec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeValue(data)
	if err != nil || !reflect.DeepEqual(got, rec) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for name, tc := range map[string]struct {
		in string
		ok bool
	}{
		"plain tenant":       {`{"apps":{}}`, true},
		"empty object":       {`{}`, true},
		"delete":             {`{"op":"delete","who":{"actor":"x"}}`, true},
		"not json":           {`nope`, false},
		"array":              {`[]`, false},
		"null":               {`null`, false},
		"unknown field":      {`{"apps":{},"evil":1}`, false},
		"record extra field": {`{"op":"put","tenant":{},"apps":{}}`, false},
		"put without tenant": {`{"op":"put"}`, false},
		"delete with tenant": {`{"op":"delete","tenant":{}}`, false},
		"unknown op":         {`{"op":"merge","tenant":{}}`, false},
		"trailing":           {`{"apps":{}} {}`, false},
		"nested unknown":     {`{"op":"put","tenant":{"apps":{"a":{"x":1}}}}`, false},
		"bad type":           {`{"apps":1}`, false},
	} {
		_, err := DecodeValue([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", name, err)
		}
	}
	big := make([]byte, MaxValue+1)
	if _, err := DecodeValue(big); err == nil {
		t.Error("oversized value accepted")
	}
}

// FuzzDecodeValue: bucket values are untrusted; decoding never panics, and a
// decoded record encodes and decodes to the same record.
func FuzzDecodeValue(f *testing.F) {
	for _, s := range []string{`{"apps":{}}`, `{"op":"put","tenant":{"apps":{"a":{"stages":{"prod":{"replicas":[{"address":"1.2.3.4:5"}]}}}}},"who":{"remote":"x"},"when":"2026-01-01T00:00:00Z"}`,
		`{"op":"delete"}`, `{"op":1}`, `{"domains":{"a.b":{"stage":"prod","default_app":"x"}}}`, `null`, `{"op":"put","tenant":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeValue(data)
		if err != nil {
			return
		}
		if r.Op == OpPut && r.Tenant == nil {
			t.Fatal("put without tenant decoded")
		}
		enc, err := EncodeValue(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := DecodeValue(enc)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", enc, err)
		}
		a, _ := json.Marshal(r)
		b, _ := json.Marshal(r2)
		if string(a) != string(b) {
			t.Fatalf("round trip differs: %s vs %s", a, b)
		}
	})
}
