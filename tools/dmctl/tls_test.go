package main

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/dmgrid/dmgrid/internal/e2e"
	"github.com/dmgrid/dmgrid/internal/grpctls"
	"github.com/dmgrid/dmgrid/services/notifier"
)

// TestTLS: dmctl against session workers serving mutual TLS (e2e Options.TLS) with
// --tls-ca/--tls-cert/--tls-key or the DMGRID_TLS_* variables; refused without the CA or
// without a client certificate; bad TLS settings fail at once, naming the flag. The notifier
// serves its API over TLS and reaches the session tier over mutual TLS
// (GetNotificationTarget), so "dmctl notify" crosses both links.
func TestTLS(t *testing.T) {
	st := e2e.Start(t, e2e.Options{Workers: 1, TLS: true})
	pki := st.TLS
	tlsFlags := []string{"--tls-ca", pki.CA.CAFile, "--tls-cert", pki.ClientCert, "--tls-key", pki.ClientKey}
	a := &apiT{t: t, st: st, addr: st.GRPCAddrs[0]}

	out := a.ok(append([]string{"device", "create", "IMEI:tls-a", "--client-auth", "md5", "--client-name", "c", "--client-secret", "client-pw",
		"--server-auth", "md5", "--server-name", "dms.example", "--server-secret", "server-pw", "--msisdn", "+4915100000002"}, tlsFlags...)...)
	if field(t, out, "device_id") != "IMEI:tls-a" {
		t.Fatalf("create printed:\n%s", out)
	}
	a.ok(append([]string{"device", "get", "IMEI:tls-a"}, tlsFlags...)...)
	// The same from the environment; the flag names the server's certificate by its name.
	t.Setenv("DMGRID_TLS_CA", pki.CA.CAFile)
	t.Setenv("DMGRID_TLS_CERT", pki.ClientCert)
	t.Setenv("DMGRID_TLS_KEY", pki.ClientKey)
	_, port, _ := net.SplitHostPort(st.GRPCAddrs[0])
	a2 := &apiT{t: t, st: st, addr: "localhost:" + port}
	a2.ok("device", "get", "IMEI:tls-a", "--tls-server-name", "localhost")
	t.Setenv("DMGRID_TLS_CA", "")
	t.Setenv("DMGRID_TLS_CERT", "")
	t.Setenv("DMGRID_TLS_KEY", "")

	// Refused: plaintext, a server the CA did not sign, no client certificate. One line, at once.
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "Unavailable"},
		{[]string{"--tls-cert", pki.ClientCert, "--tls-key", pki.ClientKey}, "x509: certificate signed by unknown authority"},
		{[]string{"--tls-ca", pki.CA.CAFile}, "Unavailable"},
		{[]string{"--tls-ca", pki.CA.CAFile, "--tls-cert", pki.ClientCert, "--tls-key", pki.ClientKey, "--tls-server-name", "elsewhere.example"},
			"x509: certificate is valid for"},
	} {
		start := time.Now()
		a.fails(1, append([]string{"device", "get", "IMEI:tls-a", "--timeout", "20s"}, c.args...), c.want)
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%v: refused after %v, not at once", c.args, d)
		}
	}
	// Bad settings: named, before any connection.
	missing := filepath.Join(t.TempDir(), "missing.pem")
	a.fails(1, []string{"device", "get", "IMEI:tls-a", "--tls-ca", pki.CA.CAFile, "--tls-cert", pki.ClientCert}, "--tls-cert (DMGRID_TLS_CERT) and --tls-key (DMGRID_TLS_KEY) go together")
	a.fails(1, []string{"device", "get", "IMEI:tls-a", "--tls-ca", missing}, "--tls-ca (DMGRID_TLS_CA)", missing)
	a.fails(2, []string{"--tls-ca", pki.CA.CAFile, "syncml", "decode"}, "not syncml")

	// The notifier: TLS server, mutual TLS client of the session worker.
	nsrvCert, nsrvKey := pki.CA.Server(t, "notifier")
	addr := startNotifier(t, st, func(c *notifier.Config) {
		c.SessionTLS = pki.Client()
		c.GRPCTLS = grpctls.ServerConfig{CertFile: nsrvCert, KeyFile: nsrvKey}
	})
	n := &apiT{t: t, st: st, addr: addr}
	out = n.ok(append([]string{"notify", "IMEI:tls-a"}, "--tls-ca", pki.CA.CAFile)...)
	if field(t, out, "device_id") != "IMEI:tls-a" || field(t, out, "state") != "queued" {
		t.Fatalf("notify over TLS printed:\n%s", out)
	}
	n.fails(1, []string{"notification", "list", "IMEI:tls-a"}, "Unavailable")
}
