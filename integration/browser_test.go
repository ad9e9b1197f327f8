package integration

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
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

// documentStatus records the status of every top-level document the browser loads.
type documentStatus struct {
	mu     sync.Mutex
	byURL  map[string]int64
	latest int64
}

func watchDocuments(ctx context.Context) *documentStatus {
	ds := &documentStatus{byURL: map[string]int64{}}
	chromedp.ListenTarget(ctx, func(ev any) {
		if e, ok := ev.(*network.EventResponseReceived); ok && e.Type == network.ResourceTypeDocument {
			ds.mu.Lock()
			ds.byURL[e.Response.URL] = e.Response.Status
			ds.latest = e.Response.Status
			ds.mu.Unlock()
		}
	})
	return ds
}

func (ds *documentStatus) last() int64 {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return ds.latest
}

// signIn goes through the portal's two steps: user name, then password.
func signIn(t *testing.T, ctx context.Context, start, user, password string) {
	t.Helper()
	err := chromedp.Run(ctx,
		chromedp.Navigate(start),
		chromedp.WaitVisible(`#username`, chromedp.ByID),
		chromedp.SetValue(`#username`, user, chromedp.ByID),
		chromedp.Submit(`#username`, chromedp.ByID),
		chromedp.WaitVisible(`#secret`, chromedp.ByID),
		// The portal's submit button is named "submit", which hides the
		// form's submit() from scripts: press Enter as a person would.
		chromedp.SendKeys(`#secret`, password+kb.Enter, chromedp.ByID),
	)
	if err != nil {
		t.Fatalf("signing in as %s at %s: %v", user, start, err)
	}
	// The portal finishes the sign-in with a redirect that sets the session
	// cookie; wait until the browser holds it.
	deadline := time.Now().Add(15 * time.Second)
	for {
		var cookies []*network.Cookie
		err := chromedp.Run(ctx, chromedp.ActionFunc(func(ctx context.Context) error {
			var err error
			cookies, err = network.GetCookies().WithURLs([]string{start}).Do(ctx)
			return err
		}))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cookies {
			if c.Name == "AUTHP_ACCESS_TOKEN" {
				return
			}
		}
		if time.Now().After(deadline) {
			var loc, text string
			chromedp.Run(ctx, chromedp.Location(&loc), chromedp.Text(`body`, &text, chromedp.ByQuery))
			var names []string
			for _, c := range cookies {
				names = append(names, c.Name)
			}
			t.Fatalf("signing in as %s: no session cookie after 15s (browser at %s, cookies %v, page %.300q)", user, loc, names, text)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func pageText(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	// A navigation the portal started (its last redirect after a sign-in)
	// may still replace the page while it is read: load and read again.
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			time.Sleep(300 * time.Millisecond)
		}
		if err = chromedp.Run(ctx, chromedp.Navigate(url)); err != nil {
			// Chromium reports an error status with an empty body as a load
			// error; the status itself is checked by the caller.
			if strings.Contains(err.Error(), "ERR_HTTP_RESPONSE_CODE_FAILURE") {
				return ""
			}
			continue
		}
		var text string
		if err = chromedp.Run(ctx, chromedp.WaitReady(`body`, chromedp.ByQuery), chromedp.Text(`body`, &text, chromedp.ByQuery)); err == nil {
			return text
		}
	}
	t.Fatalf("reading %s: %v", url, err)
	return ""
}

// TestBrowserSignIn: a real browser signs in as an acme user through the
// portal, reaches acme's private app, and is refused on globex's private app,
// even after signing in there too (the token holds no globex role).
func TestBrowserSignIn(t *testing.T) {
	_, url := startIdentityEdge(t)
	ctx := chromium(t)
	if err := chromedp.Run(ctx, network.Enable()); err != nil {
		t.Fatal(err)
	}
	docs := watchDocuments(ctx)

	// Without a session, the private app sends the browser to the portal.
	var loc string
	if err := chromedp.Run(ctx, chromedp.Navigate(url("acme-dev.apps.localhost", "/ledger/")), chromedp.WaitVisible(`#username`, chromedp.ByID), chromedp.Location(&loc)); err != nil {
		t.Fatalf("private app without a session: %v", err)
	}
	if !strings.Contains(loc, "/auth") {
		t.Fatalf("without a session the browser is at %s, want the portal", loc)
	}

	signIn(t, ctx, url("acme-dev.apps.localhost", "/auth/"), "alice", "neo-demo-password")
	text := pageText(t, ctx, url("acme-dev.apps.localhost", "/ledger/entries"))
	if !strings.Contains(text, `"replica":"identity-test"`) || !strings.Contains(text, `"path":"/ledger/entries"`) || docs.last() != 200 {
		t.Fatalf("acme's private app after sign-in: status %d, page %.300q", docs.last(), text)
	}

	// globex: alice's acme session does not count there ...
	if err := chromedp.Run(ctx, chromedp.Navigate(url("globex-dev.apps.localhost", "/ledger/")), chromedp.WaitVisible(`#username`, chromedp.ByID)); err != nil {
		t.Fatalf("globex's private app did not ask to sign in: %v", err)
	}
	// ... and a token she gets from globex's portal holds no globex role: 403.
	signIn(t, ctx, url("globex-dev.apps.localhost", "/auth/"), "alice", "neo-demo-password")
	text = pageText(t, ctx, url("globex-dev.apps.localhost", "/ledger/"))
	if strings.Contains(text, "identity-test") || docs.last() != 403 {
		t.Fatalf("alice on globex's private app: status %d, page %.300q", docs.last(), text)
	}
	// And back on acme she is still signed in (her acme cookie is host-bound).
	if text := pageText(t, ctx, url("acme-dev.apps.localhost", "/ledger/")); !strings.Contains(text, "identity-test") {
		t.Fatalf("acme after visiting globex: %.200q", text)
	}
}
