package notifier

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/dmgrid/dmgrid/internal/grpctls"
	"github.com/dmgrid/dmgrid/internal/grpctls/grpctlstest"
)

// TestTLSConfig: the notifier's server (DMGRID_GRPC_TLS_*, DMGRID_GRPC_HEALTH_ADDR) and its
// client of the session tier (DMGRID_SESSION_TLS_*, mirroring DMGRID_SESSION_ADDR) are read;
// bad settings stop it at start with an error naming the variable.
func TestTLSConfig(t *testing.T) {
	ca := grpctlstest.NewCA(t, "notifier")
	cert, key := ca.Server(t, "notifier")
	ccert, ckey := ca.Client(t, "notifier-client")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	from := func(m map[string]string) (Config, error) {
		m["DMGRID_REDIS_URL"], m["DMGRID_SESSION_ADDR"] = "redis://127.0.0.1:6379/0", "dns:///session:9090"
		return ConfigFromEnv(env(m))
	}
	c, err := from(map[string]string{"DMGRID_GRPC_TLS_CERT": cert, "DMGRID_GRPC_TLS_KEY": key, "DMGRID_GRPC_TLS_CLIENT_CA": ca.CAFile,
		"DMGRID_GRPC_HEALTH_ADDR": ":9095", "DMGRID_SESSION_TLS_CA": ca.CAFile, "DMGRID_SESSION_TLS_CERT": ccert,
		"DMGRID_SESSION_TLS_KEY": ckey, "DMGRID_SESSION_TLS_SERVER_NAME": "session.internal"})
	if err != nil || c.GRPCTLS != (grpctls.ServerConfig{CertFile: cert, KeyFile: key, ClientCAFile: ca.CAFile}) || c.HealthAddr != ":9095" ||
		c.SessionTLS != (grpctls.ClientConfig{CAFile: ca.CAFile, CertFile: ccert, KeyFile: ckey, ServerName: "session.internal"}) {
		t.Fatalf("%+v %+v %q %v", c.GRPCTLS, c.SessionTLS, c.HealthAddr, err)
	}
	for _, tc := range []struct {
		env   map[string]string
		names []string
	}{
		{map[string]string{"DMGRID_GRPC_TLS_CERT": cert}, []string{"DMGRID_GRPC_TLS_CERT", "DMGRID_GRPC_TLS_KEY"}},
		{map[string]string{"DMGRID_SESSION_TLS_CERT": ccert}, []string{"DMGRID_SESSION_TLS_CERT", "DMGRID_SESSION_TLS_KEY"}},
		{map[string]string{"DMGRID_SESSION_TLS_CA": missing}, []string{"DMGRID_SESSION_TLS_CA", missing}},
	} {
		_, err := from(tc.env)
		for _, n := range tc.names {
			if err == nil || !strings.Contains(err.Error(), n) {
				t.Errorf("%v: want an error naming %s, got %v", tc.env, n, err)
			}
		}
	}
}
