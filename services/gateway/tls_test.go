package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/dmgrid/dmgrid/internal/grpctls/grpctlstest"
)

// TestHTTPSCertificateReload: the gateway serves HTTPS from a Kubernetes Secret volume; a
// renewed Secret reaches new connections without a restart, and a renewal whose key does not
// match is logged once while the last good certificate keeps being served.
func TestHTTPSCertificateReload(t *testing.T) {
	ca := grpctlstest.NewCA(t, "devices")
	certA, keyA := ca.Server(t, "gw-a")
	certB, keyB := ca.Server(t, "gw-b")
	certC, _ := ca.Server(t, "gw-c")
	sec := grpctlstest.NewSecret(t, certA, keyA)
	const every = 20 * time.Millisecond

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &grpctlstest.LogBuffer{}
	gw, err := New(Config{Path: "/dm", SessionAddr: "127.0.0.1:1", MaxBodyBytes: 64 << 10, RequestTimeout: 5 * time.Second,
		TLSCertFile: sec.CertFile, TLSKeyFile: sec.KeyFile, TLSReloadInterval: every}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("gateway did not stop")
		}
	})

	pem, err := os.ReadFile(ca.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	url := "https://" + lis.Addr().String() + "/healthz"
	// served returns the common name of the certificate a new connection is served.
	served := func() string {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}, DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].Subject.CommonName
	}
	var first string
	if !grpctlstest.Eventually(func() bool { // Serve may not have started yet
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}, DisableKeepAlives: true}
		resp, err := (&http.Client{Transport: tr, Timeout: time.Second}).Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		first = resp.TLS.PeerCertificates[0].Subject.CommonName
		return true
	}) || first != "gw-a" {
		t.Fatalf("start: served %q", first)
	}

	sec.Update(t, certB, keyB)
	if !grpctlstest.Eventually(func() bool { return served() == "gw-b" }) {
		t.Fatalf("certificate not reloaded; log:\n%s", logs)
	}

	sec.Update(t, certC, keyB) // a new certificate with the old key
	if !grpctlstest.Eventually(func() bool { served(); return logs.Count("level=WARN") > 0 }) {
		t.Fatalf("no warning; log:\n%s", logs)
	}
	for end := time.Now().Add(5 * every); time.Now().Before(end); {
		if cn := served(); cn != "gw-b" {
			t.Fatalf("after a broken renewal: served %q, want gw-b kept", cn)
		}
	}
	if n := logs.Count("level=WARN"); n != 1 || logs.Count(sec.CertFile) == 0 || logs.Count("PRIVATE KEY") != 0 {
		t.Fatalf("want one warning naming the files, without the key; log:\n%s", logs)
	}
}

// A certificate file that cannot be loaded still stops the gateway at start.
func TestHTTPSBadCertificateAtStart(t *testing.T) {
	ca := grpctlstest.NewCA(t, "devices")
	cert, _ := ca.Server(t, "gw-a")
	_, otherKey := ca.Server(t, "gw-b")
	gw, err := New(Config{Path: "/dm", SessionAddr: "127.0.0.1:1", MaxBodyBytes: 64 << 10, RequestTimeout: 5 * time.Second,
		TLSCertFile: cert, TLSKeyFile: otherKey}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	if err := gw.Serve(context.Background(), lis); err == nil {
		t.Fatal("served with a key of another certificate")
	}
}
