package lifecycle

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/dmgrid/dmgrid/internal/grpctls"
	"github.com/dmgrid/dmgrid/internal/grpctls/grpctlstest"
)

// healthTier is a tier whose API is gRPC health, like the services' own.
type healthTier struct {
	tier
	hs *health.Server
}

func (h *healthTier) Register(g *grpc.Server) { healthpb.RegisterHealthServer(g, h.hs) }
func (h *healthTier) SetServing(ok bool) {
	h.tier.SetServing(ok)
	st := healthpb.HealthCheckResponse_SERVING
	if !ok {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	h.hs.SetServingStatus("", st)
}

// check calls grpc.health.v1 Check on addr with creds and returns the status and the
// negotiated TLS version (0 in plaintext).
func check(t *testing.T, addr string, creds credentials.TransportCredentials) (healthpb.HealthCheckResponse_ServingStatus, uint16, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var p peer.Peer
	r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
	if err != nil {
		return 0, 0, err
	}
	var v uint16
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
		v = ti.State.Version
	}
	return r.Status, v, nil
}

func clientCreds(t *testing.T, c grpctls.ClientConfig) credentials.TransportCredentials {
	t.Helper()
	creds, err := c.Credentials(grpctls.SessionClientVars)
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

// TestMutualTLSAndPlaintextHealth: with a client CA the server takes only clients with a
// certificate that CA signed (TLS 1.3 negotiated); plaintext clients and clients without a
// certificate are refused with an error, not a hang; the separate health port answers in
// plaintext (what Kubernetes' gRPC probes need) and goes NOT_SERVING while draining.
func TestMutualTLSAndPlaintextHealth(t *testing.T) {
	ca := grpctlstest.NewCA(t, "lifecycle")
	cert, key := ca.Server(t, "server")
	ccert, ckey := ca.Client(t, "client")
	rogue := grpctlstest.NewCA(t, "rogue")
	rcert, rkey := rogue.Client(t, "rogue-client")

	tr := &healthTier{hs: health.NewServer()}
	tr.bg = func(ctx context.Context) error { <-ctx.Done(); return nil }
	lis, hlis := listen(t), listen(t)
	o := opts()
	o.TLS = grpctls.ServerConfig{CertFile: cert, KeyFile: key, ClientCAFile: ca.CAFile}
	o.HealthListener, o.Health = hlis, tr.hs
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeGRPC(ctx, lis, tr, o) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := lis.Addr().String()

	st, v, err := check(t, addr, clientCreds(t, grpctls.ClientConfig{CAFile: ca.CAFile, CertFile: ccert, KeyFile: ckey}))
	if err != nil || st != healthpb.HealthCheckResponse_SERVING || v != tls.VersionTLS13 {
		t.Fatalf("client with a certificate: %v, TLS version %x, %v", st, v, err)
	}
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(ca.CAFile)
	if err != nil || !pool.AppendCertsFromPEM(pem) {
		t.Fatal("CA file", err)
	}
	for _, c := range []struct {
		name  string
		creds credentials.TransportCredentials
		want  []string // one of these in the error ("" = any)
	}{
		// TLS 1.3 refuses a client certificate after the client's side of the handshake is
		// done, so the client sees the alert or the connection torn down, whichever comes
		// first; TLS 1.2 refuses it inside the handshake (the alert, always).
		{"no client certificate", clientCreds(t, grpctls.ClientConfig{CAFile: ca.CAFile}), []string{"certificate required", "broken pipe", "connection reset", "EOF"}},
		{"no client certificate, TLS 1.2", credentials.NewTLS(&tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12}), []string{"remote error: tls: "}},
		{"certificate of another CA", clientCreds(t, grpctls.ClientConfig{CAFile: ca.CAFile, CertFile: rcert, KeyFile: rkey}), []string{""}},
		{"server not trusted", clientCreds(t, grpctls.ClientConfig{CAFile: rogue.CAFile, CertFile: ccert, KeyFile: ckey}), []string{"x509: certificate signed by unknown authority"}},
		{"TLS 1.1", credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}), []string{"protocol version"}},
		{"plaintext", insecure.NewCredentials(), []string{""}},
	} {
		start := time.Now()
		_, _, err := check(t, addr, c.creds)
		found := false
		for _, w := range c.want {
			found = found || (err != nil && strings.Contains(err.Error(), w))
		}
		if status.Code(err) != codes.Unavailable || !found || time.Since(start) > 4*time.Second {
			t.Errorf("%s: %v after %v; want Unavailable mentioning one of %q, at once", c.name, err, time.Since(start).Round(time.Millisecond), c.want)
		}
	}
	// The health port: plaintext, health only.
	haddr := hlis.Addr().String()
	if st, v, err := check(t, haddr, insecure.NewCredentials()); err != nil || st != healthpb.HealthCheckResponse_SERVING || v != 0 {
		t.Fatalf("health port: %v %x %v", st, v, err)
	}
	conn, err := grpc.NewClient(haddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = conn.Invoke(context.Background(), "/dmgrid.session.v1.SessionService/HandleMessage", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("the health port serves more than health: %v", err)
	}
	// Draining: the health port says NOT_SERVING until the API server has stopped.
	cancel()
	select {
	case err := <-done:
		done <- err
	case <-time.After(5 * time.Second):
		t.Fatal("did not stop")
	}
	if _, _, err := check(t, haddr, insecure.NewCredentials()); err == nil {
		t.Fatal("the health port still answers after the server stopped")
	}
}

// A health address without a health server, and a bad TLS configuration, fail at start.
func TestServeGRPCRefusesBadOptions(t *testing.T) {
	tr := &tier{bg: func(ctx context.Context) error { <-ctx.Done(); return nil }}
	o := opts()
	o.HealthAddr = "127.0.0.1:0"
	if err := ServeGRPC(context.Background(), listen(t), tr, o); err == nil || !strings.Contains(err.Error(), "health") {
		t.Fatalf("health address without a health server: %v", err)
	}
	o = opts()
	o.TLS = grpctls.ServerConfig{CertFile: "/nonexistent/cert.pem"}
	if err := ServeGRPC(context.Background(), listen(t), tr, o); err == nil || !strings.Contains(err.Error(), "DMGRID_GRPC_TLS_KEY") {
		t.Fatalf("certificate without key: %v", err)
	}
}
