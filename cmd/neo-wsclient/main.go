// Command neo-wsclient is a small WebSocket client for trying caddy-neo's
// WebSockets (no Debian package has one that fits): it opens a socket,
// sends each message argument (or, without any, each line of standard
// input) as a text message, prints each message it gets back on a line of
// its own, and closes the socket normally.
//
//	go run ./cmd/neo-wsclient [-k] [-H 'Name: value']... wss://acme-dev.apps.localhost:8443/orders/ws hello world
//
// -k skips the verification of the server's certificate (the local
// topology's internal CA); -H adds a request header (repeatable, e.g. an
// Authorization bearer token for a private app). Names under .localhost
// are dialled on 127.0.0.1, as curl does. It exits non-zero when the
// handshake fails (printing the status) or a message does not come back.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/coder/websocket"
)

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	insecure := flag.Bool("k", false, "skip the verification of the server's certificate")
	timeout := flag.Duration("timeout", 30*time.Second, "give up after this long")
	var hdrs headers
	flag.Var(&hdrs, "H", "a request header 'Name: value' (repeatable)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: neo-wsclient [-k] [-H 'Name: value']... ws[s]://host/path [message...]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() < 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(flag.Arg(0), flag.Args()[1:], hdrs, *insecure, *timeout, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "neo-wsclient:", err)
		os.Exit(1)
	}
}

func run(url string, msgs []string, hdrs []string, insecure bool, timeout time.Duration, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	h := http.Header{}
	for _, kv := range hdrs {
		k, v, ok := strings.Cut(kv, ":")
		if !ok {
			return fmt.Errorf("-H %q: want 'Name: value'", kv)
		}
		h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: insecure}, //nolint:gosec // -k, as curl's
		// WebSockets upgrade HTTP/1.1 connections
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if host, port, err := net.SplitHostPort(addr); err == nil && (host == "localhost" || strings.HasSuffix(host, ".localhost")) {
				addr = net.JoinHostPort("127.0.0.1", port)
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	// coder/websocket closes the handshake's response body itself
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}, HTTPHeader: h}) //nolint:bodyclose
	if err != nil {
		if resp != nil {
			return fmt.Errorf("handshake: %s: %w", resp.Status, err)
		}
		return fmt.Errorf("handshake: %w", err)
	}
	defer func() { _ = c.CloseNow() }()
	c.SetReadLimit(16 << 20)
	send := func(m string) error {
		if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			return err
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "%s\n", got)
		return err
	}
	if len(msgs) > 0 {
		for _, m := range msgs {
			if err := send(m); err != nil {
				return err
			}
		}
	} else {
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			if err := send(sc.Text()); err != nil {
				return err
			}
		}
		if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	return c.Close(websocket.StatusNormalClosure, "")
}
