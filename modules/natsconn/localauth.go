package natsconn

// The embedded server's authorization: the users, permissions, accounts and
// nkeys of a nats-server configuration file (the production permission file,
// caddyfiles/nats/cluster/authorization.conf), with the users' passwords
// generated at first start and kept in Caddy's data directory, so that the
// local topology runs the production model without anyone choosing passwords.

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/nats-io/nats-server/v2/server"
)

// LocalCredentialsFile is the file, in Caddy's data directory, that holds
// the passwords of the users of an embedded server's authorization file:
// JSON {"users": {"<user>": "<password>", ...}}, mode 0600. It is written
// when a user has no password yet and read at every start and reload.
func LocalCredentialsFile() string {
	return filepath.Join(caddy.AppDataDir(), "neo", "nats-local-credentials.json")
}

// ErrLocalCredentials wraps every problem with the credentials file.
var ErrLocalCredentials = errors.New("local nats credentials")

// localAuth is an authorization file made ready for the embedded server.
type localAuth struct {
	file      string
	users     []*server.User // passwords replaced by the stored ones
	username  string         // the single-user form
	password  string
	nkeys     []*server.NkeyUser // as in the file
	accounts  []*server.Account
	noAuth    string // no_auth_user
	system    string // system_account
	timeout   float64
	passwords map[string]string // user name → password
	digest    string            // of the file and the passwords: a change means a reload
}

// loadLocalAuth parses the authorization of file with nats-server's own
// configuration parser and gives every user with a password the one stored
// for it in credsFile (generating and storing those that are missing).
func loadLocalAuth(file, credsFile string) (*localAuth, error) {
	opts, data, err := parseAuthorizationFile(file)
	if err != nil {
		return nil, err
	}
	if opts.Authorization != "" {
		return nil, fmt.Errorf("%s: token authorization is not supported for the embedded server; define users", file)
	}
	if len(opts.TrustedOperators) > 0 || len(opts.TrustedKeys) > 0 || opts.AuthCallout != nil {
		return nil, fmt.Errorf("%s: operator, trusted keys and auth callout are not supported for the embedded server; define users", file)
	}
	// users with a password: the users list, or the single-user form
	// (authorization { user: u, password: p }); the parser refuses both at once
	names := make([]string, 0, len(opts.Users)+1)
	for _, u := range opts.Users {
		names = append(names, u.Username)
	}
	if opts.Username != "" {
		names = append(names, opts.Username)
	}
	if len(names) == 0 && len(opts.Nkeys) == 0 {
		return nil, fmt.Errorf("%s: defines no users: the embedded server would accept anyone", file)
	}
	passwords, err := localPasswords(credsFile, names)
	if err != nil {
		return nil, err
	}
	la := &localAuth{
		file: file, users: opts.Users, nkeys: opts.Nkeys, accounts: opts.Accounts,
		noAuth: opts.NoAuthUser, system: opts.SystemAccount, timeout: opts.AuthTimeout,
		passwords: make(map[string]string, len(names)),
	}
	for _, u := range la.users {
		u.Password = passwords[u.Username]
	}
	if opts.Username != "" {
		la.username, la.password = opts.Username, passwords[opts.Username]
	}
	h := sha256.New()
	h.Write(data)
	for _, n := range names {
		la.passwords[n] = passwords[n]
		fmt.Fprintf(h, "\x00%s\x00%s", n, passwords[n])
	}
	la.digest = hex.EncodeToString(h.Sum(nil))
	return la, nil
}

// apply sets the authorization on the server options.
func (la *localAuth) apply(o *server.Options) {
	o.Users, o.Nkeys, o.Accounts = la.users, la.nkeys, la.accounts
	o.NoAuthUser, o.SystemAccount, o.AuthTimeout = la.noAuth, la.system, la.timeout
	o.Username, o.Password = la.username, la.password
}

// userNames lists the users with a password, sorted.
func (la *localAuth) userNames() []string {
	names := make([]string, 0, len(la.passwords))
	for n := range la.passwords {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

var (
	// the parser's words when a $VARIABLE is neither defined in the file
	// nor in the environment
	missingVariable = regexp.MustCompile(`variable reference for '([^']+)' on line \d+ can not be found`)
	// an include directive at the start of a line
	includeLine = regexp.MustCompile(`(?m)^\s*include\s`)
	// a position "<file>:<line>:<col>:" as the parser writes it for a string
	position = regexp.MustCompile(`(?m)(^|\n):(\d+):(\d+):`)
)

// parseAuthorizationFile runs nats-server's configuration parser over file.
// The production files take passwords from $NEO_NATS_*_PASSWORD variables:
// every variable the file uses but does not define gets a random placeholder
// value (defined on the file's first line, so line numbers in errors stay
// right); the users' passwords are replaced afterwards anyway. Everything
// else in the file (listen, cluster, jetstream...) is parsed and ignored.
func parseAuthorizationFile(file string) (*server.Options, []byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	if includeLine.Match(data) {
		return nil, nil, fmt.Errorf("%s: include is not supported here: name the file that holds the authorization block", file)
	}
	var defs []string
	for range 256 {
		prefix := ""
		if len(defs) > 0 {
			prefix = strings.Join(defs, "; ") + "; "
		}
		opts := new(server.Options)
		err := opts.ProcessConfigString(prefix + string(data))
		var perr interface{ Errors() []error }
		if err == nil || errors.As(err, &perr) && len(perr.Errors()) == 0 { // warnings only
			return opts, data, nil
		}
		if m := missingVariable.FindStringSubmatch(err.Error()); m != nil && !slices.ContainsFunc(defs, func(d string) bool {
			return strings.HasPrefix(d, m[1]+": ")
		}) {
			defs = append(defs, m[1]+": "+strconv.Quote(randomSecret()))
			continue
		}
		msg := position.ReplaceAllStringFunc(err.Error(), func(s string) string {
			m := position.FindStringSubmatch(s)
			col := m[3]
			if m[2] == "1" && len(prefix) > 0 {
				if c, err := strconv.Atoi(col); err == nil && c > len(prefix) {
					col = strconv.Itoa(c - len(prefix))
				}
			}
			return m[1] + file + ":" + m[2] + ":" + col + ":"
		})
		if !strings.HasPrefix(msg, file) {
			msg = file + ": " + msg
		}
		return nil, nil, errors.New(msg)
	}
	return nil, nil, fmt.Errorf("%s: too many undefined variables", file)
}

// randomSecret returns 256 random bits, base64url: a password no one can
// guess, safe in any NATS or JSON string and never taken for a bcrypt hash.
func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand panics rather than fail)
	return base64.RawURLEncoding.EncodeToString(b)
}

// localCredentials is the JSON of the credentials file.
type localCredentials struct {
	Comment string            `json:"comment,omitempty"`
	Users   map[string]string `json:"users"`
}

const credentialsComment = "Passwords of the embedded NATS server's users (caddy-neo, neo_nats embedded authorization). " +
	"Generated at first start; anyone who reads this file can connect as these users. " +
	"Delete an entry (or the file) and reload to generate a new password."

// minPasswordLen is the shortest password accepted from the file (a
// generated one has 43 characters).
const minPasswordLen = 16

// parseLocalCredentials reads the credentials file's contents.
func parseLocalCredentials(data []byte) (map[string]string, error) {
	var lc localCredentials
	if err := json.Unmarshal(data, &lc); err != nil {
		return nil, err
	}
	for user, pw := range lc.Users {
		if user == "" {
			return nil, errors.New("users: an empty user name")
		}
		if len(pw) < minPasswordLen {
			return nil, fmt.Errorf("users: %q: password shorter than %d characters (delete the entry to have one generated)", user, minPasswordLen)
		}
		for i := 0; i < len(pw); i++ {
			if pw[i] <= ' ' || pw[i] >= 0x7f {
				return nil, fmt.Errorf("users: %q: password with a space, control or non-ASCII character", user)
			}
		}
		if strings.HasPrefix(pw, "$2") {
			return nil, fmt.Errorf("users: %q: a bcrypt hash is not a password (delete the entry to have one generated)", user)
		}
	}
	if lc.Users == nil {
		lc.Users = map[string]string{}
	}
	return lc.Users, nil
}

// localPasswords returns the stored password of every user in users,
// generating, and storing, those that have none yet.
func localPasswords(path string, users []string) (map[string]string, error) {
	stored := map[string]string{}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrLocalCredentials, err)
	default:
		if runtime.GOOS != "windows" {
			if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
				return nil, fmt.Errorf("%w: %s: readable by others (mode %#o); chmod 600 it", ErrLocalCredentials, path, fi.Mode().Perm())
			}
		}
		if stored, err = parseLocalCredentials(data); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrLocalCredentials, path, err)
		}
	}
	changed := false
	for _, u := range users {
		if _, ok := stored[u]; !ok {
			stored[u] = randomSecret()
			changed = true
		}
	}
	if changed {
		if err := writeLocalCredentials(path, stored); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrLocalCredentials, err)
		}
	}
	return stored, nil
}

// writeLocalCredentials replaces the file atomically, mode 0600, in a
// directory of mode 0700 when it has to make one.
func writeLocalCredentials(path string, users map[string]string) error {
	data, err := json.MarshalIndent(localCredentials{Comment: credentialsComment, Users: users}, "", "\t")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".nats-local-credentials-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a successful rename: no such file
	if err := f.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		f.Close()
		return err
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
