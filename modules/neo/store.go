package neo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(FileStore{})
}

// Store keeps the tenants created at run time (through the admin API). The
// tenants of the Caddy config are not in it. Implementations must make Put and
// Delete durable before returning: the registry publishes a change only after
// the store accepted it. Modules implementing Store live in the `neo.stores`
// namespace (`neo.stores.file` here, `neo.stores.nats` in modules/natskv).
type Store interface {
	// Load returns every stored tenant by name.
	Load() (map[string]*TenantConfig, error)
	// Put creates or replaces a tenant.
	Put(name string, t *TenantConfig) error
	// Delete removes a tenant; deleting an absent tenant is not an error.
	Delete(name string) error
}

// FileStore keeps each run-time tenant in its own JSON file `<dir>/<tenant>.json`,
// written atomically (temporary file, fsync, rename, fsync of the directory),
// so a change costs the size of that tenant and a crash leaves the old or the
// new version, never a torn file.
type FileStore struct {
	// Dir is the directory of the tenant files (created if missing).
	// Default: `neo/tenants` in Caddy's data directory.
	Dir string `json:"dir,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (FileStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "neo.stores.file",
		New: func() caddy.Module { return new(FileStore) },
	}
}

// Provision fills the default directory and creates it.
func (s *FileStore) Provision(caddy.Context) error {
	if s.Dir == "" {
		s.Dir = filepath.Join(caddy.AppDataDir(), "neo", "tenants")
	}
	s.Dir = filepath.Clean(s.Dir)
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("dir: %w", err)
	}
	return nil
}

func (s *FileStore) file(name string) (string, error) {
	if !ValidLabel(name) {
		return "", fmt.Errorf("invalid tenant name %q", name)
	}
	return filepath.Join(s.Dir, name+".json"), nil
}

// Load reads every `*.json` file of the directory.
func (s *FileStore) Load() (map[string]*TenantConfig, error) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	out := make(map[string]*TenantConfig, len(entries))
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() || !ValidLabel(name) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.Dir, e.Name()))
		if err != nil {
			return nil, err
		}
		tc, err := ParseTenant(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		out[name] = tc
	}
	return out, nil
}

// Put writes the tenant's file atomically.
func (s *FileStore) Put(name string, t *TenantConfig) error {
	path, err := s.file(name)
	if err != nil {
		return err
	}
	data, err := json.Marshal(t)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.Dir, "."+name+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil { //nolint:gosec // G703: path is s.file(name), a validated label in s.Dir
		return err
	}
	return syncDir(s.Dir)
}

// Delete removes the tenant's file.
func (s *FileStore) Delete(name string) error {
	path, err := s.file(name)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) { //nolint:gosec // G703: as in Put
		return err
	}
	return syncDir(s.Dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir) //nolint:gosec // G703: the store's configured directory
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ParseTenant decodes a tenant object strictly: unknown fields, trailing
// data and non-objects are errors naming the field. It does not validate
// names (see TenantConfig.Validate).
func ParseTenant(data []byte) (*TenantConfig, error) {
	tc := new(TenantConfig)
	if err := strictDecode(data, tc); err != nil {
		return nil, err
	}
	return tc, nil
}

func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return errors.New("body: trailing data after the JSON value")
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err == nil {
		return errors.New("body: trailing data after the JSON value")
	}
	return nil
}

func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		f := te.Field
		if f == "" {
			f = "body"
		}
		return fmt.Errorf("%s: expected %s, got JSON %s", f, te.Type, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("body: invalid JSON at offset %d: %v", se.Offset, err)
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		return fmt.Errorf("%s: unknown field", strings.Trim(strings.TrimPrefix(msg, "json: unknown field "), `"`))
	}
	return fmt.Errorf("body: %v", err)
}

// Interface guards
var (
	_ caddy.Provisioner = (*FileStore)(nil)
	_ Store             = (*FileStore)(nil)
)
