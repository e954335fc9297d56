package inventory

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/dmgrid/dmgrid/internal/grpctls"
	"github.com/dmgrid/dmgrid/internal/grpctls/grpctlstest"
)

// TestGRPCTLSConfig: DMGRID_GRPC_TLS_* and DMGRID_GRPC_HEALTH_ADDR are read; bad TLS
// settings stop the inventory at start with an error naming the variable.
func TestGRPCTLSConfig(t *testing.T) {
	ca := grpctlstest.NewCA(t, "inventory")
	cert, key := ca.Server(t, "inventory")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	from := func(m map[string]string) (Config, error) {
		m["DMGRID_REDIS_URL"], m["DMGRID_NATS_URL"] = "redis://127.0.0.1:6379/0", "nats://127.0.0.1:4222"
		return ConfigFromEnv(func(k string) (string, bool) { v, ok := m[k]; return v, ok })
	}
	c, err := from(map[string]string{"DMGRID_GRPC_TLS_CERT": cert, "DMGRID_GRPC_TLS_KEY": key, "DMGRID_GRPC_TLS_CLIENT_CA": ca.CAFile, "DMGRID_GRPC_HEALTH_ADDR": ":9095"})
	if err != nil || c.GRPCTLS != (grpctls.ServerConfig{CertFile: cert, KeyFile: key, ClientCAFile: ca.CAFile}) || c.HealthAddr != ":9095" {
		t.Fatalf("%+v %q %v", c.GRPCTLS, c.HealthAddr, err)
	}
	for _, tc := range []struct {
		env   map[string]string
		names []string
	}{
		{map[string]string{"DMGRID_GRPC_TLS_KEY": key}, []string{"DMGRID_GRPC_TLS_CERT", "DMGRID_GRPC_TLS_KEY"}},
		{map[string]string{"DMGRID_GRPC_TLS_CERT": cert, "DMGRID_GRPC_TLS_KEY": missing}, []string{"DMGRID_GRPC_TLS_KEY", missing}},
	} {
		_, err := from(tc.env)
		for _, n := range tc.names {
			if err == nil || !strings.Contains(err.Error(), n) {
				t.Errorf("%v: want an error naming %s, got %v", tc.env, n, err)
			}
		}
	}
}
