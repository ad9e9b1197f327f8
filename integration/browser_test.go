package integration

import (
	"bytes"
	"context"
	imagepng "image/png"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// chromium returns a headless Debian Chromium context (.ci/run installs it).
func chromium(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed; .ci/run installs Debian's chromium package")
		}
		t.Skip("chromium is not installed (apt-get install chromium; .ci/run does)")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// The edge's certificates come from Caddy's internal CA, which the
		// test does not install in the system trust store.
		chromedp.Flag("ignore-certificate-errors", true),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel3)
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// browserPage is one step of a browser flow: where the browser is and what
// the page says.
type browserPage struct {
	URL, Tenant, Realm, Body string
}

// readPage waits until the browser is at a URL with the given path prefix,
// then reads the page and saves a screenshot of it (in NEO_SCREENSHOTS, or
// the test's temporary directory), checking that one was taken.
func readPage(t *testing.T, ctx context.Context, pathPrefix, shot string) browserPage {
	t.Helper()
	var p browserPage
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := chromedp.Run(ctx, chromedp.Location(&p.URL))
		if err == nil {
			if u, perr := url.Parse(p.URL); perr == nil && strings.HasPrefix(u.RequestURI(), pathPrefix) {
				err = chromedp.Run(ctx, chromedp.WaitReady(`body`, chromedp.ByQuery), chromedp.Text(`body`, &p.Body, chromedp.ByQuery))
				if err == nil {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("browser not at %s after 30s: at %s (%v), page %.300q", pathPrefix, p.URL, err, p.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var nodes []*cdp.Node
	if chromedp.Run(ctx, chromedp.Nodes(`#neo-tenant`, &nodes, chromedp.AtLeast(0), chromedp.ByQuery)) == nil && len(nodes) > 0 {
		chromedp.Run(ctx, chromedp.Text(`#neo-tenant`, &p.Tenant, chromedp.ByQuery), chromedp.Text(`#neo-realm`, &p.Realm, chromedp.ByQuery))
	}
	var png []byte
	if err := chromedp.Run(ctx, chromedp.CaptureScreenshot(&png)); err != nil {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	if _, err := imagepng.DecodeConfig(bytes.NewReader(png)); err != nil {
		t.Fatalf("screenshot %s is not a PNG: %v", shot, err)
	}
	dir := os.Getenv("NEO_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.WriteFile(filepath.Join(dir, shot+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitVisible waits until the page the browser is on shows sel (the next
// page after a form's submission, when it has the same URL).
func waitVisible(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	if err := chromedp.Run(ctx, chromedp.WaitVisible(sel, chromedp.ByQuery)); err != nil {
		t.Fatalf("waiting for %s: %v", sel, err)
	}
}

// submitSignIn fills the sign-in form of the page the browser is on and submits it.
func submitSignIn(t *testing.T, ctx context.Context, user, password string) {
	t.Helper()
	if err := chromedp.Run(ctx,
		chromedp.WaitVisible(`#username`, chromedp.ByID),
		chromedp.SendKeys(`#username`, user, chromedp.ByID),
		chromedp.SendKeys(`#password`, password, chromedp.ByID),
		chromedp.Click(`#signin`, chromedp.ByID),
	); err != nil {
		t.Fatalf("signing in as %s: %v", user, err)
	}
}

// TestBrowserSignIn: a person opens acme's private app in a real browser,
// is sent to acme's sign-in page for the dev stage (the tenant's name on
// it), signs in and lands on the URL asked for; the session covers every app
// of the stage and no other stage or tenant; sign-out ends it.
func TestBrowserSignIn(t *testing.T) {
	e := startIdentityEdge(t, identityEdgeOpts{})
	identityTenants(t, e)
	ctx := chromium(t)
	if err := chromedp.Run(ctx, network.Enable()); err != nil {
		t.Fatal(err)
	}
	nav := func(host, path string) {
		t.Helper()
		if err := chromedp.Run(ctx, chromedp.Navigate(e.url(host, path))); err != nil {
			t.Fatalf("navigate %s%s: %v", host, path, err)
		}
	}

	nav("acme-dev.apps.localhost", "/ledger/entries?id=7")
	p := readPage(t, ctx, "/identity/login?return=%2Fledger%2Fentries%3Fid%3D7", "1-acme-dev-sign-in")
	if p.Tenant != "acme" || p.Realm != "dev" || !strings.Contains(p.Body, "User name") {
		t.Fatalf("sign-in page: %+v", p)
	}
	submitSignIn(t, ctx, "alice", "wrong-password")
	waitVisible(t, ctx, "#neo-error")
	p = readPage(t, ctx, "/identity/login", "2-wrong-password")
	if !strings.Contains(p.Body, "Wrong user name or password.") {
		t.Fatalf("wrong password page: %.300q", p.Body)
	}
	// The form keeps where to go back to.
	submitSignIn(t, ctx, "alice", "alice-password")
	p = readPage(t, ctx, "/ledger/entries?id=7", "3-ledger-after-sign-in")
	if !strings.Contains(p.Body, `"path":"/ledger/entries"`) || !strings.Contains(p.Body, `"Neo-User":["alice"]`) {
		t.Fatalf("acme's private app after sign-in: %.400q", p.Body)
	}
	// One session for every app of the stage.
	nav("acme-dev.apps.localhost", "/wiki/page")
	if p = readPage(t, ctx, "/wiki/page", "4-wiki-same-session"); !strings.Contains(p.Body, `"Neo-User":["alice"]`) {
		t.Fatalf("another app of the stage: %.300q", p.Body)
	}
	// Not for another stage of acme, nor for globex: their own sign-in pages.
	nav("acme.apps.localhost", "/ledger/")
	if p = readPage(t, ctx, "/identity/login", "5-acme-prod-sign-in"); p.Tenant != "acme" || p.Realm != "prod" {
		t.Fatalf("acme prod: %+v", p)
	}
	nav("globex-dev.apps.localhost", "/ledger/")
	if p = readPage(t, ctx, "/identity/login", "6-globex-sign-in"); p.Tenant != "globex" || p.Realm != "dev" {
		t.Fatalf("globex: %+v", p)
	}
	// alice is not a user of globex.
	submitSignIn(t, ctx, "alice", "alice-password")
	waitVisible(t, ctx, "#neo-error")
	if p = readPage(t, ctx, "/identity/login", "7-alice-on-globex"); !strings.Contains(p.Body, "Wrong user name or password.") {
		t.Fatalf("alice on globex: %.300q", p.Body)
	}
	// Sign-out ends the session.
	nav("acme-dev.apps.localhost", "/identity/logout")
	readPage(t, ctx, "/identity/logout", "8-sign-out")
	if err := chromedp.Run(ctx, chromedp.Click(`#signout`, chromedp.ByID), chromedp.WaitVisible(`#neo-signed-out`, chromedp.ByID)); err != nil {
		t.Fatalf("signing out: %v", err)
	}
	nav("acme-dev.apps.localhost", "/ledger/")
	if p = readPage(t, ctx, "/identity/login", "9-after-sign-out"); p.Tenant != "acme" {
		t.Fatalf("after sign-out: %+v", p)
	}
}
