package grpctls_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/dmgrid/dmgrid/internal/grpctls"
	"github.com/dmgrid/dmgrid/internal/grpctls/grpctlstest"
)

const reloadEvery = 20 * time.Millisecond

// whoami is a health server that answers with the common name of the verified client
// certificate, in the "client-cn" header.
type whoami struct {
	healthpb.UnimplementedHealthServer
}

func (whoami) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	cn := ""
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.VerifiedChains) > 0 {
			cn = info.State.VerifiedChains[0][0].Subject.CommonName
		}
	}
	grpc.SetHeader(ctx, metadata.Pairs("client-cn", cn))
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// names dials addr on a new connection with creds and returns the common names of the
// server's certificate and of the client certificate the server verified.
func names(t *testing.T, addr string, creds credentials.TransportCredentials) (server, client string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var p peer.Peer
	var md metadata.MD
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.Header(&md)); err != nil {
		t.Fatalf("call: %v", err)
	}
	info := p.AuthInfo.(credentials.TLSInfo)
	if v := md.Get("client-cn"); len(v) == 1 {
		client = v[0]
	}
	return info.State.PeerCertificates[0].Subject.CommonName, client
}

// TestReload: a mutual-TLS gRPC server and a client whose certificate files are Kubernetes
// Secret volumes. Renewed files reach new connections without a restart, for the server's
// certificate and for the client's; a renewal whose key does not match is logged once and the
// last good pair stays in use.
func TestReload(t *testing.T) {
	v := grpctls.SessionClientVars
	ca := grpctlstest.NewCA(t, "test")
	srvA, srvAKey := ca.Server(t, "srv-a")
	srvB, srvBKey := ca.Server(t, "srv-b")
	srvC, _ := ca.Server(t, "srv-c")
	cliA, cliAKey := ca.Client(t, "cli-a")
	cliB, cliBKey := ca.Client(t, "cli-b")
	cliC, _ := ca.Client(t, "cli-c")
	srvSecret := grpctlstest.NewSecret(t, srvA, srvAKey)
	cliSecret := grpctlstest.NewSecret(t, cliA, cliAKey)
	srvLog, cliLog := &grpctlstest.LogBuffer{}, &grpctlstest.LogBuffer{}

	screds, err := grpctls.ServerConfig{CertFile: srvSecret.CertFile, KeyFile: srvSecret.KeyFile, ClientCAFile: ca.CAFile,
		ReloadInterval: reloadEvery, Log: slog.New(slog.NewTextHandler(srvLog, nil))}.Credentials()
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(screds))
	healthpb.RegisterHealthServer(srv, whoami{})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	addr := lis.Addr().String()

	// One set of client credentials for the whole test, as a gateway keeps its connection's.
	ccreds, err := grpctls.ClientConfig{CAFile: ca.CAFile, CertFile: cliSecret.CertFile, KeyFile: cliSecret.KeyFile,
		ReloadInterval: reloadEvery, Log: slog.New(slog.NewTextHandler(cliLog, nil))}.Credentials(v)
	if err != nil {
		t.Fatal(err)
	}
	if s, c := names(t, addr, ccreds); s != "srv-a" || c != "cli-a" {
		t.Fatalf("start: server %q client %q", s, c)
	}

	// The server's Secret renewed: new connections see B, the server never restarted.
	srvSecret.Update(t, srvB, srvBKey)
	if !grpctlstest.Eventually(func() bool { s, _ := names(t, addr, ccreds); return s == "srv-b" }) {
		t.Fatalf("server certificate not reloaded; log:\n%s", srvLog)
	}
	// The client's Secret renewed: the server sees the new client certificate.
	cliSecret.Update(t, cliB, cliBKey)
	if !grpctlstest.Eventually(func() bool { _, c := names(t, addr, ccreds); return c == "cli-b" }) {
		t.Fatalf("client certificate not reloaded; log:\n%s", cliLog)
	}

	// Broken renewals (a new certificate with the old key): logged once each, B kept.
	srvSecret.Update(t, srvC, srvBKey)
	cliSecret.Update(t, cliC, cliBKey)
	if !grpctlstest.Eventually(func() bool {
		names(t, addr, ccreds)
		return srvLog.Count("level=WARN") > 0 && cliLog.Count("level=WARN") > 0
	}) {
		t.Fatalf("no warnings; server log:\n%s\nclient log:\n%s", srvLog, cliLog)
	}
	for end := time.Now().Add(5 * reloadEvery); time.Now().Before(end); {
		if s, c := names(t, addr, ccreds); s != "srv-b" || c != "cli-b" {
			t.Fatalf("after a broken renewal: server %q client %q, want srv-b cli-b kept", s, c)
		}
	}
	for what, l := range map[string]*grpctlstest.LogBuffer{"server": srvLog, "client": cliLog} {
		if n := l.Count("level=WARN"); n != 1 {
			t.Errorf("%s: %d warnings, want 1:\n%s", what, n, l)
		}
		if l.Count("PRIVATE KEY") != 0 {
			t.Errorf("%s: key in the log:\n%s", what, l)
		}
	}
	if srvLog.Count("DMGRID_GRPC_TLS_KEY") == 0 || cliLog.Count("DMGRID_SESSION_TLS_KEY") == 0 || srvLog.Count(srvSecret.CertFile) == 0 {
		t.Errorf("warnings must name the variables and files:\n%s\n%s", srvLog, cliLog)
	}
}
