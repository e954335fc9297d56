package grpctls_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dmgrid/dmgrid/internal/envflag"
	"github.com/dmgrid/dmgrid/internal/grpctls"
	"github.com/dmgrid/dmgrid/internal/grpctls/grpctlstest"
)

func reader(m map[string]string) *envflag.Reader {
	return envflag.NewReader(func(k string) (string, bool) { v, ok := m[k]; return v, ok })
}

// wantErr checks that err is non-nil and names every variable in names.
func wantErr(t *testing.T, what string, err error, names ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: accepted", what)
		return
	}
	for _, n := range names {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("%s: error does not name %s: %v", what, n, err)
		}
	}
}

func TestServerConfig(t *testing.T) {
	ca := grpctlstest.NewCA(t, "test")
	cert, key := ca.Server(t, "srv")
	other := grpctlstest.NewCA(t, "other")
	_, otherKey := other.Server(t, "srv")
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")

	// Off when nothing is set: no credentials, no error.
	if c := grpctls.ReadServer(reader(nil)); c.Enabled() || c.Validate() != nil {
		t.Fatalf("unset: %+v %v", c, c.Validate())
	}
	if creds, err := (grpctls.ServerConfig{}).Credentials(); creds != nil || err != nil {
		t.Fatalf("unset credentials: %v %v", creds, err)
	}

	c := grpctls.ReadServer(reader(map[string]string{"DMGRID_GRPC_TLS_CERT": cert, "DMGRID_GRPC_TLS_KEY": key, "DMGRID_GRPC_TLS_CLIENT_CA": ca.CAFile}))
	cfg, err := c.TLSConfig()
	if err != nil || cfg == nil {
		t.Fatalf("good config: %v", err)
	}
	if cfg.MinVersion != tls.VersionTLS12 || cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil || cfg.GetCertificate == nil || cfg.InsecureSkipVerify {
		t.Fatalf("server tls.Config: min %x auth %v", cfg.MinVersion, cfg.ClientAuth)
	}
	if cfg, _ := (grpctls.ServerConfig{CertFile: cert, KeyFile: key}).TLSConfig(); cfg.ClientAuth != tls.NoClientCert {
		t.Fatalf("without a client CA client certificates must not be asked for: %v", cfg.ClientAuth)
	}

	for _, tc := range []struct {
		name  string
		c     grpctls.ServerConfig
		names []string
	}{
		{"cert without key", grpctls.ServerConfig{CertFile: cert}, []string{"DMGRID_GRPC_TLS_CERT", "DMGRID_GRPC_TLS_KEY"}},
		{"key without cert", grpctls.ServerConfig{KeyFile: key}, []string{"DMGRID_GRPC_TLS_CERT", "DMGRID_GRPC_TLS_KEY"}},
		{"client CA without TLS", grpctls.ServerConfig{ClientCAFile: ca.CAFile}, []string{"DMGRID_GRPC_TLS_CLIENT_CA"}},
		{"unreadable cert", grpctls.ServerConfig{CertFile: missing, KeyFile: key}, []string{"DMGRID_GRPC_TLS_CERT", missing}},
		{"unreadable key", grpctls.ServerConfig{CertFile: cert, KeyFile: missing}, []string{"DMGRID_GRPC_TLS_KEY", missing}},
		{"key of another certificate", grpctls.ServerConfig{CertFile: cert, KeyFile: otherKey}, []string{"DMGRID_GRPC_TLS_CERT", "DMGRID_GRPC_TLS_KEY"}},
		{"cert not PEM", grpctls.ServerConfig{CertFile: garbage, KeyFile: key}, []string{"DMGRID_GRPC_TLS_CERT"}},
		{"unreadable client CA", grpctls.ServerConfig{CertFile: cert, KeyFile: key, ClientCAFile: missing}, []string{"DMGRID_GRPC_TLS_CLIENT_CA", missing}},
		{"client CA not PEM", grpctls.ServerConfig{CertFile: cert, KeyFile: key, ClientCAFile: garbage}, []string{"DMGRID_GRPC_TLS_CLIENT_CA", "no PEM certificate"}},
	} {
		wantErr(t, tc.name, tc.c.Validate(), tc.names...)
		if creds, err := tc.c.Credentials(); creds != nil || err == nil {
			t.Errorf("%s: credentials built from a bad configuration", tc.name)
		}
	}
}

func TestClientConfig(t *testing.T) {
	v := grpctls.SessionClientVars
	ca := grpctlstest.NewCA(t, "test")
	cert, key := ca.Client(t, "client")
	missing := filepath.Join(t.TempDir(), "missing.pem")

	if c := grpctls.ReadClient(reader(nil), v); c.Enabled() || c.Validate(v) != nil {
		t.Fatalf("unset: %+v", c)
	}
	if creds, err := (grpctls.ClientConfig{}).Credentials(v); err != nil || creds.Info().SecurityProtocol != "insecure" {
		t.Fatalf("unset: want plaintext credentials, got %v %v", creds, err)
	}
	c := grpctls.ReadClient(reader(map[string]string{"DMGRID_SESSION_TLS_CA": ca.CAFile, "DMGRID_SESSION_TLS_CERT": cert,
		"DMGRID_SESSION_TLS_KEY": key, "DMGRID_SESSION_TLS_SERVER_NAME": "session.internal"}), v)
	cfg, err := c.TLSConfig(v)
	if err != nil || cfg.MinVersion != tls.VersionTLS12 || cfg.RootCAs == nil || cfg.GetClientCertificate == nil || cfg.ServerName != "session.internal" || cfg.InsecureSkipVerify {
		t.Fatalf("client tls.Config: %+v %v", cfg, err)
	}
	if creds, err := c.Credentials(v); err != nil || creds.Info().SecurityProtocol != "tls" {
		t.Fatalf("credentials: %v %v", creds, err)
	}
	// Any setting turns TLS on; without a CA the system's roots verify the server.
	if c := (grpctls.ClientConfig{ServerName: "x"}); !c.Enabled() {
		t.Fatal("a server name alone must turn TLS on")
	}
	if cfg, err := (grpctls.ClientConfig{ServerName: "x"}).TLSConfig(v); err != nil || cfg.RootCAs != nil {
		t.Fatalf("no CA: %v %v", cfg, err)
	}

	for _, tc := range []struct {
		name  string
		c     grpctls.ClientConfig
		names []string
	}{
		{"cert without key", grpctls.ClientConfig{CAFile: ca.CAFile, CertFile: cert}, []string{"DMGRID_SESSION_TLS_CERT", "DMGRID_SESSION_TLS_KEY"}},
		{"key without cert", grpctls.ClientConfig{CAFile: ca.CAFile, KeyFile: key}, []string{"DMGRID_SESSION_TLS_CERT", "DMGRID_SESSION_TLS_KEY"}},
		{"unreadable CA", grpctls.ClientConfig{CAFile: missing}, []string{"DMGRID_SESSION_TLS_CA", missing}},
		{"unreadable cert", grpctls.ClientConfig{CAFile: ca.CAFile, CertFile: missing, KeyFile: key}, []string{"DMGRID_SESSION_TLS_CERT"}},
		{"server name with port", grpctls.ClientConfig{CAFile: ca.CAFile, ServerName: "session:9090"}, []string{"DMGRID_SESSION_TLS_SERVER_NAME"}},
	} {
		wantErr(t, tc.name, tc.c.Validate(v), tc.names...)
	}
}

// A static list of addresses has no host name in its target: with TLS each address is
// verified against its own host, unless a server name is configured.
func TestAddresses(t *testing.T) {
	list := []string{"10.0.0.1:9090", "worker-1.example:9090", "[::1]:9090"}
	got := grpctls.ClientConfig{CAFile: "ca.pem"}.Addresses(list)
	for i, want := range []string{"10.0.0.1", "worker-1.example", "::1"} {
		if got[i].Addr != list[i] || got[i].ServerName != want {
			t.Errorf("address %d: %+v, want server name %q", i, got[i], want)
		}
	}
	for _, c := range []grpctls.ClientConfig{{}, {CAFile: "ca.pem", ServerName: "session"}} {
		for _, a := range c.Addresses(list) {
			if a.ServerName != "" {
				t.Errorf("%+v: address %+v carries a server name", c, a)
			}
		}
	}
}
