package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/projectneo/caddy-neo/integration/harness"
)

// grpcReplica is a real grpc-go server (the interop TestService) speaking
// h2c on loopback: every answer names its tenant, so a call that reached
// another tenant's replica shows.
type grpcReplica struct {
	testpb.UnimplementedTestServiceServer
	tenant string
	calls  atomic.Int64
	// md is the metadata of the last unary call
	md atomic.Pointer[metadata.MD]
}

func (s *grpcReplica) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	s.calls.Add(1)
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		s.md.Store(&md)
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs("neo-replica", s.tenant))
	if st := req.GetResponseStatus(); st != nil && st.Code != 0 {
		// no message: a trailers-only response
		_ = grpc.SetTrailer(ctx, metadata.Pairs("neo-detail", "refused by "+s.tenant, "neo-detail-bin", string([]byte{0, 1, 2, 0xff})))
		return nil, status.Error(codes.Code(st.Code), st.Message)
	}
	_ = grpc.SetTrailer(ctx, metadata.Pairs("neo-trailer", s.tenant+"-done"))
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: append([]byte(s.tenant+":"), req.GetPayload().GetBody()...)}}, nil
}

func (s *grpcReplica) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	s.calls.Add(1)
	for i, p := range req.GetResponseParameters() {
		body := fmt.Appendf(nil, "%s:%d:", s.tenant, i)
		body = append(body, make([]byte, p.GetSize())...)
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: body}}); err != nil {
			return err
		}
	}
	stream.SetTrailer(metadata.Pairs("neo-sent", fmt.Sprint(len(req.GetResponseParameters()))))
	return nil
}

func (s *grpcReplica) StreamingInputCall(stream grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	s.calls.Add(1)
	total := 0
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			stream.SetTrailer(metadata.Pairs("neo-tenant", s.tenant))
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(req.GetPayload().GetBody())
	}
}

func (s *grpcReplica) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	s.calls.Add(1)
	n := 0
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			stream.SetTrailer(metadata.Pairs("neo-echoed", fmt.Sprint(n)))
			return nil
		}
		if err != nil {
			return err
		}
		if st := req.GetResponseStatus(); st != nil && st.Code != 0 {
			return status.Error(codes.Code(st.Code), st.Message)
		}
		n++
		body := append([]byte(s.tenant+":"), req.GetPayload().GetBody()...)
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: body}}); err != nil {
			return err
		}
	}
}

func startGRPCReplica(t *testing.T, tenant string) (*grpcReplica, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &grpcReplica{tenant: tenant}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, r)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return r, ln.Addr().(*net.TCPAddr).Port
}

// grpcTopo: the production edge and stage gateway role files, unchanged,
// with a nats-server of the production permissions, and tenants acme and
// globex whose app rpc (protocol h2c, on custom domains rpc.<tenant>.localhost
// with default_app_mode all) has one grpc-go replica each, and whose app ws
// one WebSocket echo replica each.
type grpcTopo struct {
	natsURL       string
	edge, gateway *harness.Instance
	edgePort      int
	roots         *x509.CertPool
	acme, globex  *grpcReplica
	// the replicas of the private app vault
	acmeVault, globexVault *grpcReplica
	acmeWS                 *wsReplica
	gwEnv                  []string
	gwAdmin                string
	gwListen               string
	edgeOpts               harness.Options
}

const grpcTenant = `tenant %[1]s {
	app rpc {
		public
		protocol h2c
		stage prod {
			replica 127.0.0.1:%[2]d az-a
		}
	}
	app ws {
		public
		stage prod {
			replica 127.0.0.1:%[3]d az-a
		}
	}
	domain rpc.%[1]s.localhost prod {
		default_app rpc all
	}
	app vault {
		protocol h2c
		stage prod {
			replica 127.0.0.1:%[4]d az-a
		}
	}
	domain vault.%[1]s.localhost prod {
		default_app vault all
	}
	identity {
		stage prod {
			user %[1]s-user {
				password %[1]s-password
				roles vault-reader
			}
		}
	}
}
`

func startGRPCTopo(t *testing.T) *grpcTopo {
	t.Helper()
	gt := &grpcTopo{natsURL: prodNATS(t)}
	var acmePort, globexPort int
	gt.acme, acmePort = startGRPCReplica(t, "acme")
	gt.globex, globexPort = startGRPCReplica(t, "globex")
	var acmeVaultPort, globexVaultPort int
	gt.acmeVault, acmeVaultPort = startGRPCReplica(t, "acme-vault")
	gt.globexVault, globexVaultPort = startGRPCReplica(t, "globex-vault")
	vaultPorts := map[string]int{"acme": acmeVaultPort, "globex": globexVaultPort}
	dir := t.TempDir()
	gt.acmeWS = startWSEchoReplica(t)
	wsPorts := map[string]int{"acme": gt.acmeWS.port, "globex": startWSEchoReplica(t).port}
	for name, port := range map[string]int{"acme": acmePort, "globex": globexPort} {
		if err := os.WriteFile(filepath.Join(dir, name+".caddy"), fmt.Appendf(nil, grpcTenant, name, port, wsPorts[name], vaultPorts[name]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ports, err := harness.FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	common := []string{"NEO_NATS_URL=" + gt.natsURL, "NEO_TENANT_STORE=file", "NEO_TENANTS=" + dir, "NEO_ZONE=az-a"}
	unset := []string{"NEO_IDENTITY_KEK", "NEO_NATS_EDGE_PASSWORD", "NEO_NATS_GW_PASSWORD", "NEO_NATS_PLATFORM_PASSWORD"}
	gt.gwAdmin, gt.gwListen = fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	gt.gwEnv = append([]string{"NEO_ADMIN=" + gt.gwAdmin, fmt.Sprintf("NEO_STAGE_PORT=%d", ports[1]), "NEO_STAGE=prod",
		"NEO_NATS_GW_PASSWORD=" + natsPassword("gw-prod"), "NEO_STORE_DIR=" + t.TempDir()}, common...)
	gt.gateway = gt.startGateway(t)
	gt.edgePort = ports[3]
	gt.edgeOpts = harness.Options{Config: "caddyfiles/edge.Caddyfile", Admin: fmt.Sprintf("127.0.0.1:%d", ports[2]),
		Env: append([]string{fmt.Sprintf("NEO_ADMIN=127.0.0.1:%d", ports[2]), fmt.Sprintf("NEO_HTTPS_PORT=%d", ports[3]),
			fmt.Sprintf("NEO_HTTP_PORT=%d", ports[4]), "NEO_BIND=127.0.0.1", "NEO_TLS=internal", "NEO_CERT_STORAGE=file",
			"NEO_IDENTITY_STORE=memory", "NEO_IDENTITY_KEK=" + testKEK, "NEO_NATS_EDGE_PASSWORD=" + natsPassword("edge"),
			"NEO_STORE_DIR=" + t.TempDir()}, common...),
		Unset: unset, WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", ports[3])}}
	gt.edge = gt.startEdge(t)
	return gt
}

// startEdge starts the edge (again), and trusts its CA.
func (gt *grpcTopo) startEdge(t *testing.T) *harness.Instance {
	t.Helper()
	edge, err := harness.StartProcess(gt.edgeOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(edge.Stop)
	if gt.roots, err = edge.RootPool("local"); err != nil {
		t.Fatal(err)
	}
	return edge
}

func (gt *grpcTopo) startGateway(t *testing.T) *harness.Instance {
	t.Helper()
	gw, err := harness.StartProcess(harness.Options{Config: "caddyfiles/stage.Caddyfile", Admin: gt.gwAdmin, Env: gt.gwEnv,
		Unset: []string{"NEO_IDENTITY_KEK", "NEO_NATS_EDGE_PASSWORD", "NEO_NATS_PLATFORM_PASSWORD"}, WaitFor: []string{gt.gwListen}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.Stop)
	return gw
}

// dial opens a gRPC client connection to the edge for host: TLS with the
// edge's internal CA, SNI and :authority host.
func (gt *grpcTopo) dial(t *testing.T, host string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", gt.edgePort),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: gt.roots, ServerName: host})),
		grpc.WithAuthority(host))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// TestGRPCOverNATS: gRPC calls of every kind through the built binary's
// production roles, edge (TLS, limits, WAF, neo_route) -> NATS -> stage
// gateway -> grpc-go replica over h2c: messages, status, grpc-message and
// custom trailer metadata arrive as the replica sent them, a bidirectional
// stream of 1,000 messages flows, and no call reaches the other tenant.
func TestGRPCOverNATS(t *testing.T) {
	gt := startGRPCTopo(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	acme := testpb.NewTestServiceClient(gt.dial(t, "rpc.acme.localhost"))
	logs := func() string {
		return "edge:\n" + tail(gt.edge.Logs(), 3000) + "\ngateway:\n" + tail(gt.gateway.Logs(), 3000)
	}

	t.Run("unary with header and trailer metadata", func(t *testing.T) {
		var hdr, trl metadata.MD
		resp, err := acme.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hello")}},
			grpc.Header(&hdr), grpc.Trailer(&trl), grpc.WaitForReady(true))
		if err != nil {
			t.Fatalf("unary: %v\n%s", err, logs())
		}
		if got := string(resp.GetPayload().GetBody()); got != "acme:hello" {
			t.Fatalf("unary answer %q", got)
		}
		if got := hdr.Get("neo-replica"); len(got) != 1 || got[0] != "acme" {
			t.Errorf("header metadata neo-replica %v (all: %v)", got, hdr)
		}
		if got := trl.Get("neo-trailer"); len(got) != 1 || got[0] != "acme-done" {
			t.Errorf("trailer metadata neo-trailer %v (all: %v)", got, trl)
		}
	})

	t.Run("error status in a trailers-only response", func(t *testing.T) {
		var trl metadata.MD
		_, err := acme.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.PermissionDenied), Message: "no entry: ünïcode % and 100%"}},
			grpc.Trailer(&trl))
		st, ok := status.FromError(err)
		if !ok || st.Code() != codes.PermissionDenied || st.Message() != "no entry: ünïcode % and 100%" {
			t.Fatalf("status %v (%v), want PermissionDenied with the message\n%s", st, err, logs())
		}
		if got := trl.Get("neo-detail"); len(got) != 1 || got[0] != "refused by acme" {
			t.Errorf("trailer neo-detail %v (all %v)", got, trl)
		}
		if got := trl.Get("neo-detail-bin"); len(got) != 1 || got[0] != string([]byte{0, 1, 2, 0xff}) {
			t.Errorf("binary trailer neo-detail-bin %q", got)
		}
	})

	t.Run("server streaming", func(t *testing.T) {
		params := make([]*testpb.ResponseParameters, 200)
		for i := range params {
			params[i] = &testpb.ResponseParameters{Size: int32(i * 97)}
		}
		s, err := acme.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: params})
		if err != nil {
			t.Fatal(err)
		}
		for i := range params {
			m, err := s.Recv()
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if want := fmt.Sprintf("acme:%d:", i); !strings.HasPrefix(string(m.GetPayload().GetBody()), want) || len(m.GetPayload().GetBody()) != len(want)+i*97 {
				t.Fatalf("message %d: %.20q, %d bytes", i, m.GetPayload().GetBody(), len(m.GetPayload().GetBody()))
			}
		}
		if _, err := s.Recv(); err != io.EOF {
			t.Fatalf("after the last message: %v", err)
		}
		if got := s.Trailer().Get("neo-sent"); len(got) != 1 || got[0] != "200" {
			t.Errorf("trailer neo-sent %v", got)
		}
	})

	t.Run("client streaming", func(t *testing.T) {
		s, err := acme.StreamingInputCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for i := range 300 {
			body := make([]byte, i*131)
			total += len(body)
			if err := s.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: body}}); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		resp, err := s.CloseAndRecv()
		if err != nil {
			t.Fatalf("close: %v\n%s", err, logs())
		}
		if int(resp.GetAggregatedPayloadSize()) != total {
			t.Fatalf("replica counted %d bytes, sent %d", resp.GetAggregatedPayloadSize(), total)
		}
		if got := s.Trailer().Get("neo-tenant"); len(got) != 1 || got[0] != "acme" {
			t.Errorf("trailer neo-tenant %v", got)
		}
	})

	t.Run("bidirectional stream of 1000 messages, in lockstep", func(t *testing.T) {
		// each answer is read before the next message is sent: a chain that
		// held the request body or the response back would hang here
		s, err := acme.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 1000 {
			want := fmt.Sprintf("m%d", i)
			if err := s.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(want)}}); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			m, err := s.Recv()
			if err != nil {
				t.Fatalf("recv %d: %v\n%s", i, err, logs())
			}
			if got := string(m.GetPayload().GetBody()); got != "acme:"+want {
				t.Fatalf("message %d: %q", i, got)
			}
		}
		if err := s.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != io.EOF {
			t.Fatalf("after close: %v", err)
		}
		if got := s.Trailer().Get("neo-echoed"); len(got) != 1 || got[0] != "1000" {
			t.Errorf("trailer neo-echoed %v", got)
		}
	})

	t.Run("bidirectional stream ended by an error status", func(t *testing.T) {
		s, err := acme.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("x")}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&testpb.StreamingOutputCallRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.ResourceExhausted), Message: "quota"}}); err != nil {
			t.Fatal(err)
		}
		_, err = s.Recv()
		if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted || st.Message() != "quota" {
			t.Fatalf("status %v, want ResourceExhausted quota", err)
		}
	})

	t.Run("the other tenant", func(t *testing.T) {
		before := gt.acme.calls.Load()
		globex := testpb.NewTestServiceClient(gt.dial(t, "rpc.globex.localhost"))
		resp, err := globex.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("x")}})
		if err != nil || string(resp.GetPayload().GetBody()) != "globex:x" {
			t.Fatalf("globex's call: %q %v", resp.GetPayload().GetBody(), err)
		}
		if gt.acme.calls.Load() != before {
			t.Fatal("globex's call reached acme's replica")
		}
	})

	t.Run("cross-tenant attempts", func(t *testing.T) {
		globexCalls := gt.globex.calls.Load()
		// TLS for acme's domain, :authority globex's (an HTTP/2 client
		// sending a gRPC request; grpc-go itself refuses the mismatch):
		// the edge refuses it
		h2 := &http.Client{Transport: &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: gt.roots, ServerName: "rpc.acme.localhost"}}}
		req, _ := http.NewRequestWithContext(ctx, "POST", fmt.Sprintf("https://127.0.0.1:%d/grpc.testing.TestService/UnaryCall", gt.edgePort), bytes.NewReader([]byte{0, 0, 0, 0, 0}))
		req.Host = "rpc.globex.localhost"
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		hresp, err := h2.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, hresp.Body)
		hresp.Body.Close()
		if hresp.StatusCode == 200 {
			t.Fatalf("a call with acme's SNI and globex's authority was served: %v", hresp.Header)
		}
		t.Logf("acme SNI, globex authority: %d", hresp.StatusCode)

		// a gRPC head on acme's subject naming globex's domain, published
		// as the edge user: the gateway's neo_route refuses it (404)
		nc, err := nats.Connect(gt.natsURL, nats.UserInfo("edge", natsPassword("edge")), nats.CustomInboxPrefix("_EDGE"))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		head := nats.Header{"Neo-Nats-Kind": {"head"}, "Neo-Nats-Version": {"1"}, "Neo-Nats-Method": {"POST"},
			"Neo-Nats-Path": {"/grpc.testing.TestService/UnaryCall"}, "Neo-Nats-Host": {"rpc.globex.localhost"},
			"H-Content-Type": {"application/grpc"}, "Neo-Nats-Window": {"8"}, "Neo-Nats-Length": {"5"}, "Neo-Nats-Eof": {"1"}}
		resp, err := nc.RequestMsg(&nats.Msg{Subject: "neo.rt.prod.az-a.acme.rpc", Header: head, Data: []byte{0, 0, 0, 0, 0}}, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if st := resp.Header.Get("Neo-Nats-Status"); st != "404" {
			t.Fatalf("acme's subject with globex's host: status %q, want 404", st)
		}
		if gt.globex.calls.Load() != globexCalls {
			t.Fatal("a cross-tenant attempt reached globex's replica")
		}
	})
}

// signIn signs in on host with the sign-in form, as a browser does, and
// returns the session's access token (the __Host-neo_at cookie).
func (gt *grpcTopo) signIn(t *testing.T, host, user, password string) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: gt.roots, ServerName: host},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", gt.edgePort))
		}}}
	t.Cleanup(c.CloseIdleConnections)
	return signInForm(t, c, fmt.Sprintf("https://%s:%d", host, gt.edgePort), host, user, password)
}

// bearer is gRPC per-call credentials: an access token in the
// authorization metadata.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return true }

// TestGRPCPrivateApp: a private app takes gRPC calls only from a user of its
// tenant and stage signed in: no token, a forged one and another tenant's
// are refused with Unauthenticated or PermissionDenied before any replica
// sees the call; a valid token in the authorization metadata opens unary
// and streaming calls, and the replica learns who called (neo-user,
// neo-user-roles, neo-realm) and gets the token to verify itself, as an HTTP
// app does.
func TestGRPCPrivateApp(t *testing.T) {
	gt := startGRPCTopo(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	logs := func() string {
		return "edge:\n" + tail(gt.edge.Logs(), 3000) + "\ngateway:\n" + tail(gt.gateway.Logs(), 3000)
	}
	vault := testpb.NewTestServiceClient(gt.dial(t, "vault.acme.localhost"))
	acmeTok := gt.signIn(t, "vault.acme.localhost", "acme-user", "acme-password")
	globexTok := gt.signIn(t, "vault.globex.localhost", "globex-user", "globex-password")
	call := func(creds grpc.CallOption) (*testpb.SimpleResponse, error) {
		opts := []grpc.CallOption{grpc.WaitForReady(true)}
		if creds != nil {
			opts = append(opts, creds)
		}
		return vault.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("secret")}}, opts...)
	}

	for _, c := range []struct {
		name  string
		creds grpc.CallOption
		want  codes.Code
	}{
		{"no token", nil, codes.Unauthenticated},
		{"forged signature", grpc.PerRPCCredentials(bearer(acmeTok[:len(acmeTok)-4] + "AAAA")), codes.Unauthenticated},
		{"garbage", grpc.PerRPCCredentials(bearer("abc.def.ghi")), codes.Unauthenticated},
		{"globex's token", grpc.PerRPCCredentials(bearer(globexTok)), codes.PermissionDenied},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := call(c.creds)
			if status.Code(err) != c.want {
				t.Fatalf("code %v (%v), want %v\n%s", status.Code(err), err, c.want, logs())
			}
			if n := gt.acmeVault.calls.Load() + gt.globexVault.calls.Load(); n != 0 {
				t.Fatalf("a refused call reached a vault replica (%d calls)", n)
			}
		})
	}

	t.Run("signed in", func(t *testing.T) {
		creds := grpc.PerRPCCredentials(bearer(acmeTok))
		resp, err := call(creds)
		if err != nil || string(resp.GetPayload().GetBody()) != "acme-vault:secret" {
			t.Fatalf("unary: %q %v\n%s", resp.GetPayload().GetBody(), err, logs())
		}
		md := *gt.acmeVault.md.Load()
		if got := md.Get("neo-user"); len(got) != 1 || got[0] != "acme-user" {
			t.Errorf("neo-user %v (metadata %v)", got, md)
		}
		if got := md.Get("neo-user-roles"); len(got) != 1 || got[0] != "vault-reader" {
			t.Errorf("neo-user-roles %v", got)
		}
		if got := md.Get("neo-realm"); len(got) != 1 || got[0] != "prod" {
			t.Errorf("neo-realm %v", got)
		}
		if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+acmeTok {
			t.Errorf("the replica did not get the access token: %v", got)
		}
		stream, err := vault.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{
			ResponseParameters: []*testpb.ResponseParameters{{Size: 10}, {Size: 20}, {Size: 30}}}, creds)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			m, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("stream after %d messages: %v", n, err)
			}
			if !bytes.HasPrefix(m.GetPayload().GetBody(), fmt.Appendf(nil, "acme-vault:%d:", n)) {
				t.Fatalf("message %d: %.20q", n, m.GetPayload().GetBody())
			}
			n++
		}
		if n != 3 {
			t.Fatalf("%d of 3 streamed messages", n)
		}
		if gt.globexVault.calls.Load() != 0 {
			t.Fatal("acme's calls reached globex's vault")
		}
	})
}
