package session

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/dmgrid/dmgrid/internal/grpctls"
	"github.com/dmgrid/dmgrid/internal/grpctls/grpctlstest"
)

// TestGRPCTLSConfig: DMGRID_GRPC_TLS_* and DMGRID_GRPC_HEALTH_ADDR are read; a certificate
// without its key, a client CA without TLS, or a file that cannot be read stops the worker
// at start with an error naming the variable.
func TestGRPCTLSConfig(t *testing.T) {
	ca := grpctlstest.NewCA(t, "session")
	cert, key := ca.Server(t, "worker")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	base := func(m map[string]string) map[string]string {
		m["DMGRID_REDIS_URL"] = "redis://127.0.0.1:6379/0"
		return m
	}

	c, err := ConfigFromEnv(lookup(base(map[string]string{"DMGRID_GRPC_TLS_CERT": cert, "DMGRID_GRPC_TLS_KEY": key,
		"DMGRID_GRPC_TLS_CLIENT_CA": ca.CAFile, "DMGRID_GRPC_HEALTH_ADDR": ":9095"})))
	if err != nil || c.GRPCTLS != (grpctls.ServerConfig{CertFile: cert, KeyFile: key, ClientCAFile: ca.CAFile}) || c.HealthAddr != ":9095" {
		t.Fatalf("%+v %q %v", c.GRPCTLS, c.HealthAddr, err)
	}
	if c, err := ConfigFromEnv(lookup(base(map[string]string{}))); err != nil || c.GRPCTLS.Enabled() || c.HealthAddr != "" {
		t.Fatalf("default must be plaintext without a health port: %+v %v", c, err)
	}
	for _, tc := range []struct {
		env   map[string]string
		names []string
	}{
		{map[string]string{"DMGRID_GRPC_TLS_CERT": cert}, []string{"DMGRID_GRPC_TLS_CERT", "DMGRID_GRPC_TLS_KEY"}},
		{map[string]string{"DMGRID_GRPC_TLS_CLIENT_CA": ca.CAFile}, []string{"DMGRID_GRPC_TLS_CLIENT_CA"}},
		{map[string]string{"DMGRID_GRPC_TLS_CERT": missing, "DMGRID_GRPC_TLS_KEY": key}, []string{"DMGRID_GRPC_TLS_CERT", missing}},
		{map[string]string{"DMGRID_GRPC_TLS_CERT": cert, "DMGRID_GRPC_TLS_KEY": key, "DMGRID_GRPC_TLS_CLIENT_CA": missing}, []string{"DMGRID_GRPC_TLS_CLIENT_CA", missing}},
	} {
		_, err := ConfigFromEnv(lookup(base(tc.env)))
		for _, n := range tc.names {
			if err == nil || !strings.Contains(err.Error(), n) {
				t.Errorf("%v: want an error naming %s, got %v", tc.env, n, err)
			}
		}
	}
}
