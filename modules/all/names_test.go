package all

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

const modulePath = "github.com/projectneo/caddy-neo/"

// registered lists every module ID caddy-neo registers. Adding a module
// means adding it here, namespaced.
var registered = []string{
	"admin.api.neo",
	"admin.api.neo_identity",
	"caddy.listeners.neo_framing",
	"caddy.listeners.neo_sni",
	"caddy.storage.neo_nats",
	"http.handlers.neo_access",
	"http.handlers.neo_echo",
	"http.handlers.neo_egress",
	"http.handlers.neo_forwarded",
	"http.handlers.neo_framing",
	"http.handlers.neo_identity",
	"http.handlers.neo_log_fingerprints",
	"http.handlers.neo_login_user",
	"http.handlers.neo_nats_sockets",
	"http.handlers.neo_rate_limit",
	"http.handlers.neo_route",
	"http.handlers.neo_signin",
	"http.handlers.neo_stage_host",
	"http.handlers.neo_waf",
	"http.matchers.neo_rate_tier",
	"http.reverse_proxy.selection_policies.neo_zone",
	"http.reverse_proxy.transport.neo_http",
	"http.reverse_proxy.transport.neo_nats",
	"http.reverse_proxy.upstreams.neo",
	"neo",
	"neo.stores.file",
	"neo.stores.nats",
	"neo_identity",
	"neo_nats",
	"neo_nats_gateway",
	"neo_secrets",
	"neo_waf_accel",
	"tls.permission.neo",
}

// published are IDs and Caddyfile names that published plugins register
// (caddyserver.com's module list): caddy-neo must never register them,
// since Caddy panics on a duplicate registration.
var published = []string{
	"nats", "nats_gateway", "caddy.storage.nats", "http.reverse_proxy.transport.nats",
	"http.handlers.nats_publish", "http.handlers.nats_request", "waf_accel",
	"http.handlers.waf", "http.handlers.rate_limit", "http.handlers.authenticator",
	"security", "crowdsec", "layer4", "events",
}

// namespaced reports whether an ID's name is caddy-neo's own: its last
// label is "neo" or starts with "neo_", or it lives under the "neo."
// namespace (a module of ours with guest modules, such as neo.stores.*).
func namespaced(id string) bool {
	if id == "neo" || strings.HasPrefix(id, "neo.") {
		return true
	}
	name := id[strings.LastIndexByte(id, '.')+1:]
	return name == "neo" || strings.HasPrefix(name, "neo_")
}

func TestModuleIDsNamespaced(t *testing.T) {
	var ours []string
	for _, id := range caddy.Modules() {
		mi, err := caddy.GetModule(id)
		if err != nil {
			t.Fatal(err)
		}
		typ := reflect.TypeOf(mi.New())
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if !strings.HasPrefix(typ.PkgPath(), modulePath) {
			continue
		}
		ours = append(ours, id)
		if !namespaced(id) {
			t.Errorf("module %q (%s) is not namespaced: name it neo_… or …neo_…", id, typ)
		}
		if slices.Contains(published, id) {
			t.Errorf("module %q collides with a published plugin", id)
		}
	}
	slices.Sort(ours)
	if !slices.Equal(ours, registered) {
		t.Errorf("registered modules changed:\n got  %q\n want %q\n(update the list in this test, namespaced)", ours, registered)
	}
}

// TestCaddyfileNamesNamespaced checks every global option and directive
// registered in the source (httpcaddyfile offers no list of them).
func TestCaddyfileNamesNamespaced(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	found := 0
	err := filepath.WalkDir(filepath.Join(root, "modules"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			switch sel.Sel.Name {
			case "RegisterGlobalOption", "RegisterHandlerDirective", "RegisterDirective", "RegisterDirectiveOrder":
			default:
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok {
				t.Errorf("%s: %s with a non-literal name", fset.Position(call.Pos()), sel.Sel.Name)
				return true
			}
			name, _ := strconv.Unquote(lit.Value)
			found++
			if name != "neo" && !strings.HasPrefix(name, "neo_") {
				t.Errorf("%s: %s %q is not namespaced (neo_…)", fset.Position(call.Pos()), sel.Sel.Name, name)
			}
			if slices.Contains(published, name) {
				t.Errorf("%s: %q collides with a published plugin", fset.Position(call.Pos()), name)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found < 10 {
		t.Fatalf("found only %d registrations: the scan is broken", found)
	}
}
