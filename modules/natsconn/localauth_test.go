package natsconn

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/projectneo/caddy-neo/internal/route"
)

// the production permission files the embedded server can take its
// authorization from
var productionAuthFiles = []string{"../../caddyfiles/nats/cluster/authorization.conf", "../../caddyfiles/nats/nats-server.conf"}

// TestLocalAuthIsProduction: the embedded server's users and permissions are
// exactly those nats-server itself reads from the production files; only the
// passwords differ: generated, 43 characters, one per user, stored 0600.
func TestLocalAuthIsProduction(t *testing.T) {
	for _, file := range productionAuthFiles {
		t.Run(filepath.Base(file), func(t *testing.T) {
			for _, u := range natsUsers {
				t.Setenv("NEO_NATS_"+strings.ToUpper(strings.ReplaceAll(u, "-", "_"))+"_PASSWORD", "pw-"+u)
			}
			want, err := server.ProcessConfigFile(file)
			if err != nil {
				t.Fatal(err)
			}
			creds := filepath.Join(t.TempDir(), "neo", "creds.json")
			la, err := loadLocalAuth(file, creds)
			if err != nil {
				t.Fatal(err)
			}
			if len(la.users) != len(want.Users) || len(want.Users) != len(natsUsers) {
				t.Fatalf("%d users, nats-server reads %d", len(la.users), len(want.Users))
			}
			seen := map[string]bool{}
			for i, u := range la.users {
				w := want.Users[i]
				if u.Username != w.Username || !samePermissions(u.Permissions, w.Permissions) {
					t.Errorf("user %s: permissions %+v, nats-server reads %s %+v", u.Username, u.Permissions, w.Username, w.Permissions)
				}
				if len(u.Password) != 43 || u.Password == w.Password || seen[u.Password] || la.passwords[u.Username] != u.Password {
					t.Errorf("user %s: password %q", u.Username, u.Password)
				}
				seen[u.Password] = true
			}
			for path, mode := range map[string]os.FileMode{creds: 0o600, filepath.Dir(creds): 0o700} {
				fi, err := os.Stat(path)
				if err != nil || fi.Mode().Perm() != mode {
					t.Errorf("%s: mode %v, want %#o (%v)", path, fi.Mode().Perm(), mode, err)
				}
			}
		})
	}
}

// TestLocalAuthIgnoresEnvironment: passwords in the environment (the
// production variables) never reach the embedded server; the parse does not
// need them either.
func TestLocalAuthIgnoresEnvironment(t *testing.T) {
	creds := filepath.Join(t.TempDir(), "creds.json")
	la, err := loadLocalAuth(productionAuthFiles[0], creds)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NEO_NATS_EDGE_PASSWORD", "from-the-environment")
	la2, err := loadLocalAuth(productionAuthFiles[0], creds)
	if err != nil {
		t.Fatal(err)
	}
	if la2.passwords["edge"] != la.passwords["edge"] || la2.digest != la.digest {
		t.Fatal("the environment changed the embedded server's passwords")
	}
}

// TestLocalCredentialsReused: the file written at the first start is read,
// not rewritten, at the next; a user added to the authorization file gets a
// password, the others keep theirs.
func TestLocalCredentialsReused(t *testing.T) {
	dir := t.TempDir()
	auth := filepath.Join(dir, "auth.conf")
	writeAuth := func(users ...string) {
		var b strings.Builder
		b.WriteString("authorization {\n  users: [\n")
		for _, u := range users {
			fmt.Fprintf(&b, "    { user: %s, password: $PW_%s, permissions: { publish: [\"%s.>\"] } }\n", u, strings.ToUpper(u), u)
		}
		b.WriteString("  ]\n}\n")
		if err := os.WriteFile(auth, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	creds := filepath.Join(dir, "data", "creds.json")
	writeAuth("a", "b")
	first, err := loadLocalAuth(auth, creds)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(creds)
	fi1, _ := os.Stat(creds)
	again, err := loadLocalAuth(auth, creds)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(creds)
	fi2, _ := os.Stat(creds)
	if !reflect.DeepEqual(first.passwords, again.passwords) || !bytes.Equal(before, after) || !fi1.ModTime().Equal(fi2.ModTime()) || again.digest != first.digest {
		t.Fatal("the second load changed the passwords or rewrote the file")
	}
	writeAuth("a", "b", "c")
	more, err := loadLocalAuth(auth, creds)
	if err != nil {
		t.Fatal(err)
	}
	if more.passwords["a"] != first.passwords["a"] || more.passwords["b"] != first.passwords["b"] || len(more.passwords["c"]) != 43 {
		t.Fatalf("passwords after adding c: %v", more.passwords)
	}
	if more.digest == first.digest {
		t.Fatal("a changed file kept the digest: a reload would not apply it")
	}
}

// TestLocalAuthErrors: every problem names the file and what is wrong.
func TestLocalAuthErrors(t *testing.T) {
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	creds := filepath.Join(dir, "creds.json")
	for _, c := range []struct{ name, file, want string }{
		{"missing file", filepath.Join(dir, "nope.conf"), "nope.conf: no such file"},
		{"no users", file("empty.conf", "listen: 127.0.0.1:4222\n"), "empty.conf: defines no users"},
		{"token", file("token.conf", "authorization { token: $T }\n"), "token.conf: token authorization is not supported"},
		{"include", file("inc.conf", "# users\ninclude ./auth.conf\n"), "inc.conf: include is not supported"},
		{"syntax", file("bad.conf", "authorization {\n  users: [ { user: a, password: x, bogus: 1 } ]\n}\n"), "bad.conf:2:"},
		{"duplicate user", file("dup.conf", "authorization { users: [ {user: a, password: $P}, {user: a, password: $Q} ] }\n"), "dup.conf"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := loadLocalAuth(c.file, creds)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	// the single-user form works
	la, err := loadLocalAuth(file("single.conf", "authorization { user: solo, password: $SOLO_PASSWORD }\n"), creds)
	if err != nil || len(la.passwords["solo"]) != 43 || la.username != "solo" || la.password != la.passwords["solo"] {
		t.Fatalf("single user: %+v %v", la, err)
	}
}

// TestLocalCredentialsRefused: a credentials file others may read, or one
// that does not hold usable passwords, is refused rather than used or
// silently replaced.
func TestLocalCredentialsRefused(t *testing.T) {
	for _, c := range []struct {
		name, body string
		mode       os.FileMode
		want       string
	}{
		{"world readable", `{"users":{}}`, 0o644, "readable by others"},
		{"group readable", `{"users":{}}`, 0o640, "chmod 600"},
		{"not json", `users: x`, 0o600, "invalid character"},
		{"short password", `{"users":{"edge":"short"}}`, 0o600, `"edge": password shorter than 16`},
		{"bcrypt", `{"users":{"edge":"$2a$11$abcdefghijklmnopqrstuv"}}`, 0o600, "bcrypt"},
		{"space", `{"users":{"edge":"a password with spaces"}}`, 0o600, "space"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "creds.json")
			if err := os.WriteFile(p, []byte(c.body), c.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, c.mode); err != nil { // past the umask
				t.Fatal(err)
			}
			_, err := localPasswords(p, []string{"edge"})
			if !errors.Is(err, ErrLocalCredentials) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want ErrLocalCredentials containing %q", err, c.want)
			}
			if after, _ := os.ReadFile(p); string(after) != c.body {
				t.Fatal("the refused file was rewritten")
			}
		})
	}
}

// FuzzParseLocalCredentials: any file content is refused or gives passwords
// that are long, printable and survive a write and read unchanged.
func FuzzParseLocalCredentials(f *testing.F) {
	f.Add([]byte(`{"users":{"edge":"cF3gvtkzze7891YwaYhryv2aZmYFa14dTyZx6xJx9vY"}}`))
	f.Add([]byte(`{"comment":"x","users":{}}`))
	f.Add([]byte(`{"users":{"":"aaaaaaaaaaaaaaaaaaaa"}}`))
	f.Add([]byte(`{"users":{"a":"$2a$aaaaaaaaaaaaaaaaaaaa"}}`))
	f.Add([]byte(`{"users":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		users, err := parseLocalCredentials(data)
		if err != nil {
			return
		}
		for u, pw := range users {
			if u == "" || len(pw) < minPasswordLen || strings.HasPrefix(pw, "$2") || strings.ContainsFunc(pw, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
				t.Fatalf("accepted user %q password %q", u, pw)
			}
		}
		b, err := json.Marshal(localCredentials{Users: users})
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseLocalCredentials(b)
		if err != nil || !reflect.DeepEqual(again, users) {
			t.Fatalf("round trip: %v %v", again, err)
		}
	})
}

// embeddedAuthConfig is a neo_nats app whose embedded server takes the
// production authorization; conns are the connections' JSON.
func embeddedAuthConfig(listen, authFile, conns string) []byte {
	return []byte(fmt.Sprintf(`{"admin":{"disabled":true},"logging":{"logs":{"default":{"level":"ERROR"}}},"apps":{
	"neo_nats":{"embedded":{"listen":%q,"authorization":%q},"connections":{%s}}}}`, listen, authFile, conns))
}

// activeApp is the neo_nats app of the running config.
func activeApp(t *testing.T) *App {
	t.Helper()
	app, err := caddy.ActiveContext().App("neo_nats")
	if err != nil {
		t.Fatal(err)
	}
	return app.(*App)
}

// useDataDir points Caddy's data directory (where the credentials file
// goes) at a new temporary directory.
func useDataDir(t *testing.T) string {
	dir := t.TempDir()
	t.Setenv("XDG_DATA_HOME", dir)
	return filepath.Join(dir, "caddy", "neo", "nats-local-credentials.json")
}

// TestEmbeddedAuthorization runs the app with the production authorization
// file: in-process and over the listener, a client without credentials or
// with a wrong password is refused; the local users have the production
// permissions (the edge can send requests but never read them, a stage
// gateway can read its stage only).
func TestEmbeddedAuthorization(t *testing.T) {
	credsFile := useDataDir(t)
	t.Cleanup(func() { _ = caddy.Stop() })
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := embeddedAuthConfig(listen, productionAuthFiles[0],
		`"edge":{"local_user":"edge","inbox_prefix":"_EDGE"},"gw-dev":{"local_user":"gw-dev","inbox_prefix":"_GW.dev"}`)
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatal(err)
	}
	app := activeApp(t)
	srv := app.server.srv
	var creds localCredentials
	data, err := os.ReadFile(credsFile)
	if err != nil || json.Unmarshal(data, &creds) != nil || len(creds.Users["monitor"]) != 43 {
		t.Fatalf("credentials file %s: %v %s", credsFile, err, data)
	}

	// Refused over the listener with the server's authorization violation;
	// in-process too, though nats-server then closes the pipe instead of
	// answering (after its 10 s write deadline: these run in parallel).
	t.Run("refused", func(t *testing.T) {
		for _, c := range []struct {
			name string
			opts []nats.Option
		}{
			{"anonymous", nil},
			{"wrong password", []nats.Option{nats.UserInfo("edge", "wrong-password-0123456789")}},
			{"another user's password", []nats.Option{nats.UserInfo("edge", creds.Users["monitor"])}},
			{"unknown user", []nats.Option{nats.UserInfo("nobody", creds.Users["edge"])}},
		} {
			for _, via := range []string{"listener", "in-process"} {
				if via == "in-process" && strings.Contains(c.name, "user") {
					continue // the two above make the point; each costs 10 s
				}
				t.Run(c.name+" "+via, func(t *testing.T) {
					t.Parallel()
					url, opts := "nats://"+listen, append([]nats.Option{nats.Timeout(2 * time.Second)}, c.opts...)
					if via == "in-process" {
						url, opts = "", append(opts, nats.InProcessServer(srv))
					}
					nc, err := nats.Connect(url, opts...)
					if err == nil {
						nc.Close()
						t.Fatal("connected")
					}
					if via == "listener" && !isAuthError(err) {
						t.Fatalf("refused with %v, want an authorization violation", err)
					}
				})
			}
		}
	})

	// the stored monitor password works over the listener (the nats CLI's way)
	mon, err := nats.Connect("nats://"+listen, nats.UserInfo("monitor", creds.Users["monitor"]))
	if err != nil {
		t.Fatalf("monitor: %v", err)
	}
	mon.Close()

	// the app's connections are logged in as their local users
	connz, err := srv.Connz(&server.ConnzOptions{Username: true})
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]string{}
	for _, ci := range connz.Conns {
		users[ci.Name] = ci.AuthorizedUser
	}
	if users["caddy-neo-edge"] != "edge" || users["caddy-neo-gw-dev"] != "gw-dev" {
		t.Fatalf("connections and their users: %v", users)
	}
	for _, c := range []struct {
		user, op, subject string
		denied            bool
	}{
		{"edge", "sub", route.All, true},
		{"edge", "sub", "_GW.dev.x", true},
		{"edge", "pub", route.Subject{Stage: "dev", Zone: "az-a", Tenant: "acme", App: "orders"}.Build(), false},
		{"edge", "sub", "_EDGE.x", false},
		{"gw-dev", "qsub", route.Pattern("dev", "az-a", ""), false}, // request heads only in the gateways' queue group
		{"gw-dev", "sub", route.Pattern("dev", "az-a", ""), true},
		{"gw-dev", "qsub", route.Pattern("prod", "az-a", ""), true},
		{"gw-dev", "pub", route.Subject{Stage: "dev", Zone: "az-a", Tenant: "acme", App: "orders"}.Build(), true},
		{"monitor", "pub", route.Subject{Stage: "dev", Zone: "az-a", Tenant: "acme", App: "orders"}.Build(), true},
		{"monitor", "sub", "_EDGE.>", true},
	} {
		if got := deniedAs(t, srv, c.user, creds.Users[c.user], c.op, c.subject); got != c.denied {
			t.Errorf("%s %s %s: denied %v, want %v", c.user, c.op, c.subject, got, c.denied)
		}
	}
}

// deniedAs reports whether the server refuses op (pub, sub, or qsub: a
// subscription in the gateways' queue group neo-gateway) on subject to
// a new in-process connection of user.
func deniedAs(t *testing.T, srv *server.Server, user, password, op, subject string) bool {
	t.Helper()
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.UserInfo(user, password))
	if err != nil {
		t.Fatalf("%s: %v", user, err)
	}
	defer nc.Close()
	switch op {
	case "sub":
		_, err = nc.SubscribeSync(subject)
	case "qsub":
		_, err = nc.QueueSubscribeSync(subject, "neo-gateway")
	default:
		err = nc.Publish(subject, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	// the server answers a violation before the PONG of this flush, and
	// the client records it before it reads the PONG
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return errors.Is(nc.LastError(), nats.ErrPermissionViolation)
}

// TestEmbeddedAuthorizationErrors: a config whose clients would not
// authenticate is refused at load, naming the field.
func TestEmbeddedAuthorizationErrors(t *testing.T) {
	useDataDir(t)
	t.Cleanup(func() { _ = caddy.Stop() })
	auth := productionAuthFiles[0]
	app := func(nats string) []byte {
		return []byte(`{"admin":{"disabled":true},"logging":{"logs":{"default":{"level":"ERROR"}}},"apps":{"neo_nats":` + nats + `}}`)
	}
	for _, c := range []struct{ name, cfg, want string }{
		{"unknown user", `{"embedded":{"authorization":"` + auth + `"},"connections":{"edge":{"local_user":"edgy"}}}`,
			`connections: edge: local_user: "edgy" is not a user with a password in ` + auth + ` (users: edge, gw-dev, gw-prod, gw-prod-acme, monitor, platform)`},
		{"missing file", `{"embedded":{"authorization":"/nonexistent/auth.conf"},"connections":{"edge":{"local_user":"edge"}}}`,
			"embedded: authorization: open /nonexistent/auth.conf: no such file"},
		{"no credentials", `{"embedded":{"authorization":"` + auth + `"},"connections":{"edge":{"inbox_prefix":"_EDGE"}}}`,
			"connections: edge: the embedded server requires credentials: set local_user"},
		{"no connections", `{"embedded":{"authorization":"` + auth + `"}}`,
			"connections: none configured, and the embedded server requires credentials"},
		{"neither", `{"embedded":{}}`, "embedded: authorization: required"},
		{"both", `{"embedded":{"authorization":"` + auth + `","anonymous":true}}`, "embedded: anonymous: conflicts with authorization"},
		{"local user without embedded", `{"connections":{"edge":{"local_user":"edge"}}}`, "connections: edge: local_user: needs the embedded server"},
		{"local user of anonymous", `{"embedded":{"anonymous":true},"connections":{"edge":{"local_user":"edge"}}}`, "local_user: the embedded server has no authorization file"},
		{"local user and servers", `{"embedded":{"authorization":"` + auth + `"},"connections":{"edge":{"local_user":"edge","servers":["nats://127.0.0.1:4222"]}}}`, "local_user: connects to the embedded server in-process; remove servers"},
		{"local user and user", `{"embedded":{"authorization":"` + auth + `"},"connections":{"edge":{"local_user":"edge","user":"edge"}}}`, "choose one authentication method"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := caddy.Load(app(c.cfg), true)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

// TestEmbeddedAuthorizationReload: a reload keeps the server, its
// connections and the passwords; a changed authorization file is applied by
// the reload, without a restart; a deleted credentials file gives new
// passwords at the next reload, and the connections follow.
func TestEmbeddedAuthorizationReload(t *testing.T) {
	credsFile := useDataDir(t)
	t.Cleanup(func() { _ = caddy.Stop() })
	auth := filepath.Join(t.TempDir(), "auth.conf")
	writeAuth := func(subject string) {
		body := fmt.Sprintf("authorization {\n  users: [\n    { user: app, password: $APP_PASSWORD, permissions: { publish: [%q], subscribe: [\"_INBOX.>\"] } }\n  ]\n}\n", subject)
		if err := os.WriteFile(auth, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeAuth("a.>")
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := embeddedAuthConfig(listen, auth, `"app":{"local_user":"app"}`)
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatal(err)
	}
	first := activeApp(t)
	nc, _ := first.Conn("app")
	creds1, _ := os.ReadFile(credsFile)
	var lc localCredentials
	if err := json.Unmarshal(creds1, &lc); err != nil {
		t.Fatal(err)
	}
	srv, pw := first.server.srv, lc.Users["app"]
	if deniedAs(t, srv, "app", pw, "pub", "a.x") || !deniedAs(t, srv, "app", pw, "pub", "b.x") {
		t.Fatal("the file's permissions are not enforced")
	}

	if err := caddy.Load(cfg, true); err != nil { // the same config, reloaded
		t.Fatal(err)
	}
	second := activeApp(t)
	nc2, _ := second.Conn("app")
	creds2, _ := os.ReadFile(credsFile)
	if second.server != first.server || nc2 != nc || !bytes.Equal(creds1, creds2) {
		t.Fatal("a reload replaced the server, the connection or the passwords")
	}

	writeAuth("b.>")
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatal(err)
	}
	third := activeApp(t)
	nc3, _ := third.Conn("app")
	if third.server != first.server || nc3 != nc || !nc3.IsConnected() {
		t.Fatal("the server was restarted, or the connection replaced or lost")
	}
	if deniedAs(t, srv, "app", pw, "pub", "b.x") || !deniedAs(t, srv, "app", pw, "pub", "a.x") {
		t.Fatal("the changed file's permissions are not enforced after the reload")
	}

	// the credentials file deleted: the reload generates a new password,
	// the old one no longer logs in, the connection is made anew with the new one
	if err := os.Remove(credsFile); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatal(err)
	}
	fourth := activeApp(t)
	nc4, _ := fourth.Conn("app")
	var lc2 localCredentials
	if data, err := os.ReadFile(credsFile); err != nil || json.Unmarshal(data, &lc2) != nil || lc2.Users["app"] == pw || len(lc2.Users["app"]) != 43 {
		t.Fatalf("after deleting the credentials: %v %+v", err, lc2)
	}
	if _, err := nats.Connect("nats://"+listen, nats.UserInfo("app", pw)); !isAuthError(err) {
		t.Fatalf("the old password: %v, want an authorization violation", err)
	}
	if nc4 == nc || deniedAs(t, srv, "app", lc2.Users["app"], "pub", "b.x") {
		t.Fatal("no new connection, or the new password does not log in")
	}
	if err := nc4.Flush(); err != nil {
		t.Fatalf("the new connection: %v", err)
	}
}

// BenchmarkEmbeddedAuthorization compares, side by side in one run, request
// round trips through an in-process embedded server without authorization
// and one with the production authorization (what the local topology runs):
// the edge sends a 256-byte request head on a tenant subject, the prod
// gateway answers on the edge's inbox. The two alternate in slices of 200
// round trips, so a change of the machine's speed weighs on both alike; the
// metric auth/anon is the ratio of the mean round-trip times. Run:
//
//	go test ./modules/natsconn -run XXX -bench EmbeddedAuthorization -benchtime 20000x -count 3
func BenchmarkEmbeddedAuthorization(b *testing.B) {
	b.Setenv("XDG_DATA_HOME", b.TempDir())
	la, err := loadLocalAuth(productionAuthFiles[0], LocalCredentialsFile())
	if err != nil {
		b.Fatal(err)
	}
	type chain struct {
		edge *nats.Conn
		took time.Duration
	}
	mk := func(auth *localAuth) *chain {
		ps, err := (&Embedded{Anonymous: auth == nil}).start(auth, zap.NewNop())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = ps.Destruct() })
		login := func(user, inbox string) *nats.Conn {
			opts := []nats.Option{nats.InProcessServer(ps.srv), nats.CustomInboxPrefix(inbox)}
			if auth != nil {
				opts = append(opts, nats.UserInfo(user, auth.passwords[user]))
			}
			nc, err := nats.Connect("", opts...)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(nc.Close)
			return nc
		}
		gw := login("gw-prod", "_GW.prod")
		if _, err := gw.QueueSubscribe(route.Pattern("prod", "az-a", ""), "neo-gateway", func(m *nats.Msg) { _ = m.Respond(m.Data[:16]) }); err != nil {
			b.Fatal(err)
		}
		if err := gw.Flush(); err != nil {
			b.Fatal(err)
		}
		return &chain{edge: login("edge", "_EDGE")}
	}
	anon, authed := mk(nil), mk(la)
	head := make([]byte, 256)
	const slice = 200
	b.ResetTimer()
	for done := 0; done < b.N; done += slice {
		n := min(slice, b.N-done)
		for _, c := range []*chain{anon, authed} {
			start := time.Now()
			for range n {
				if _, err := c.edge.Request(route.Subject{Stage: "prod", Zone: "az-a", Tenant: "acme", App: "orders"}.Build(), head, 5*time.Second); err != nil {
					b.Fatal(err)
				}
			}
			c.took += time.Since(start)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(anon.took.Nanoseconds())/float64(b.N), "ns/anon")
	b.ReportMetric(float64(authed.took.Nanoseconds())/float64(b.N), "ns/auth")
	b.ReportMetric(float64(authed.took)/float64(anon.took), "auth/anon")
}

// samePermissions compares permissions as nats-server applies them: an
// empty allow list is the same whether the parser made it nil or empty.
func samePermissions(a, b *server.Permissions) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}
