package gateway

import (
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	sessionv1 "github.com/dmgrid/dmgrid/proto/dmgrid/session/v1"

	"github.com/dmgrid/dmgrid/internal/grpctls"
	"github.com/dmgrid/dmgrid/internal/grpctls/grpctlstest"
	"github.com/dmgrid/dmgrid/internal/vectors"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// serveTLSWorker serves sess with the server TLS c (the session tier's code path,
// grpctls.ServerConfig) on loopback and returns its address.
func serveTLSWorker(t *testing.T, sess *echoSession, c grpctls.ServerConfig) string {
	t.Helper()
	creds, err := c.Credentials()
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(creds))
	sessionv1.RegisterSessionServiceServer(g, sess)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

// gatewayFromEnv builds a gateway from environment variables, as dmgrid-gateway does, and
// returns its URL and its log.
func gatewayFromEnv(t *testing.T, env map[string]string) (string, *syncBuffer) {
	t.Helper()
	env["DMGRID_REQUEST_TIMEOUT"] = "30s" // a handshake failure must answer long before this
	cfg, err := ConfigFromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	gw, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(srv.Close)
	return srv.URL + "/dm", logs
}

// TestSessionWorkerTLS: the gateway → session worker link over TLS and mutual TLS,
// configured with DMGRID_SESSION_TLS_*. A worker the gateway cannot verify (or that refuses
// the gateway) is answered 503 with Retry-After at once, the TLS failure in the log, and the
// worker never sees the message.
func TestSessionWorkerTLS(t *testing.T) {
	ca := grpctlstest.NewCA(t, "session")
	cert, key := ca.Server(t, "worker") // 127.0.0.1, ::1, localhost
	namedCert, namedKey := ca.Server(t, "named-worker", "session.internal")
	ccert, ckey := ca.Client(t, "gateway")
	otherCA := grpctlstest.NewCA(t, "other")
	body := vectors.Read(t, "messages/01_pkg1_client_init.xml")

	plain := grpctls.ServerConfig{CertFile: cert, KeyFile: key}
	mutual := grpctls.ServerConfig{CertFile: cert, KeyFile: key, ClientCAFile: ca.CAFile}
	named := grpctls.ServerConfig{CertFile: namedCert, KeyFile: namedKey}
	for _, c := range []struct {
		name   string
		server grpctls.ServerConfig
		env    map[string]string // besides DMGRID_SESSION_ADDR
		dns    bool              // dial dns:///localhost:<port> instead of the static 127.0.0.1:<port>
		want   int
		log    []string // one of these in the gateway's log (503 only)
	}{
		{name: "TLS", server: plain, env: map[string]string{"DMGRID_SESSION_TLS_CA": ca.CAFile}, want: 200},
		{name: "TLS through dns:///", server: plain, dns: true, env: map[string]string{"DMGRID_SESSION_TLS_CA": ca.CAFile}, want: 200},
		{name: "mutual TLS", server: mutual, want: 200,
			env: map[string]string{"DMGRID_SESSION_TLS_CA": ca.CAFile, "DMGRID_SESSION_TLS_CERT": ccert, "DMGRID_SESSION_TLS_KEY": ckey}},
		{name: "server name override", server: named, want: 200,
			env: map[string]string{"DMGRID_SESSION_TLS_CA": ca.CAFile, "DMGRID_SESSION_TLS_SERVER_NAME": "session.internal"}},

		{name: "worker signed by another CA", server: plain, want: 503,
			env: map[string]string{"DMGRID_SESSION_TLS_CA": otherCA.CAFile}, log: []string{"x509: certificate signed by unknown authority"}},
		{name: "no CA: the system roots do not know the worker", server: plain, want: 503,
			env: map[string]string{"DMGRID_SESSION_TLS_SERVER_NAME": "localhost"}, log: []string{"x509: certificate signed by unknown authority"}},
		{name: "worker certificate for another name", server: named, want: 503,
			env: map[string]string{"DMGRID_SESSION_TLS_CA": ca.CAFile}, log: []string{"x509: cannot validate certificate for 127.0.0.1"}},
		{name: "plaintext gateway", server: plain, want: 503, env: map[string]string{}, log: []string{"Unavailable"}},
		// TLS 1.3: the refused client certificate shows as the alert or a torn-down connection.
		{name: "mutual TLS without a client certificate", server: mutual, want: 503,
			env: map[string]string{"DMGRID_SESSION_TLS_CA": ca.CAFile}, log: []string{"certificate required", "broken pipe", "connection reset", "EOF"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			sess := &echoSession{}
			addr := serveTLSWorker(t, sess, c.server)
			c.env["DMGRID_SESSION_ADDR"] = addr
			if c.dns {
				_, port, _ := net.SplitHostPort(addr)
				c.env["DMGRID_SESSION_ADDR"] = "dns:///localhost:" + port
			}
			url, logs := gatewayFromEnv(t, c.env)
			start := time.Now()
			resp := post(t, url, syncml.ContentTypeXML, body)
			out := readAll(t, resp)
			took := time.Since(start)
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d: %s\nlog: %s", resp.StatusCode, c.want, out, logs)
			}
			if c.want == 200 {
				if m, _, err := syncml.Decode(out, syncml.EncodingXML, syncml.Limits{}); err != nil || m.Body.Commands[0].Data != "212" || sess.calls.Load() != 1 {
					t.Fatalf("reply %v, worker calls %d", err, sess.calls.Load())
				}
				return
			}
			if resp.Header.Get("Retry-After") == "" || !strings.Contains(string(out), "session worker unavailable") {
				t.Errorf("503 without Retry-After or with another body: %q", out)
			}
			if took > 5*time.Second {
				t.Errorf("the 503 took %v: a TLS failure must not wait for the request timeout", took)
			}
			if n := sess.calls.Load(); n != 0 {
				t.Errorf("the worker handled %d messages over a refused link", n)
			}
			found := false
			for _, w := range c.log {
				found = found || strings.Contains(logs.String(), w)
			}
			if !strings.Contains(logs.String(), "session worker call") || !found {
				t.Errorf("log does not show the TLS failure (one of %q):\n%s", c.log, logs)
			}
		})
	}
}

// TestSessionTLSConfig: bad DMGRID_SESSION_TLS_* settings stop the gateway at start, each
// error naming its variable.
func TestSessionTLSConfig(t *testing.T) {
	ca := grpctlstest.NewCA(t, "cfg")
	cert, key := ca.Client(t, "gateway")
	missing := t.TempDir() + "/missing.pem"
	for _, c := range []struct {
		env   map[string]string
		names []string
	}{
		{map[string]string{"DMGRID_SESSION_TLS_CA": ca.CAFile, "DMGRID_SESSION_TLS_CERT": cert}, []string{"DMGRID_SESSION_TLS_CERT", "DMGRID_SESSION_TLS_KEY"}},
		{map[string]string{"DMGRID_SESSION_TLS_KEY": key}, []string{"DMGRID_SESSION_TLS_CERT", "DMGRID_SESSION_TLS_KEY"}},
		{map[string]string{"DMGRID_SESSION_TLS_CA": missing}, []string{"DMGRID_SESSION_TLS_CA", missing}},
		{map[string]string{"DMGRID_SESSION_TLS_CA": ca.CAFile, "DMGRID_SESSION_TLS_CERT": missing, "DMGRID_SESSION_TLS_KEY": key}, []string{"DMGRID_SESSION_TLS_CERT", missing}},
		{map[string]string{"DMGRID_SESSION_TLS_CA": ca.CAFile, "DMGRID_SESSION_TLS_SERVER_NAME": "session:9090"}, []string{"DMGRID_SESSION_TLS_SERVER_NAME"}},
	} {
		c.env["DMGRID_SESSION_ADDR"] = "dns:///session:9090"
		_, err := ConfigFromEnv(func(k string) (string, bool) { v, ok := c.env[k]; return v, ok })
		if err == nil {
			t.Errorf("%v accepted", c.env)
			continue
		}
		for _, n := range c.names {
			if !strings.Contains(err.Error(), n) {
				t.Errorf("%v: error does not name %s: %v", c.env, n, err)
			}
		}
	}
	env := map[string]string{"DMGRID_SESSION_ADDR": "dns:///session:9090", "DMGRID_SESSION_TLS_CA": ca.CAFile,
		"DMGRID_SESSION_TLS_CERT": cert, "DMGRID_SESSION_TLS_KEY": key, "DMGRID_SESSION_TLS_SERVER_NAME": "session.internal"}
	c, err := ConfigFromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil || c.SessionTLS != (grpctls.ClientConfig{CAFile: ca.CAFile, CertFile: cert, KeyFile: key, ServerName: "session.internal"}) {
		t.Fatalf("%+v %v", c.SessionTLS, err)
	}
}
