package notifier

import (
	"path/filepath"
	"testing"

	"github.com/dmgrid/dmgrid/internal/grpctls"
	"github.com/dmgrid/dmgrid/internal/grpctls/grpctlstest"
)

// TestTLSConfig: the notifier's server (DMGRID_GRPC_TLS_*, DMGRID_GRPC_HEALTH_ADDR) and its
// client of the session tier (DMGRID_SESSION_TLS_*, mirroring DMGRID_SESSION_ADDR) are read;
// bad settings stop it at start with an error naming the variable.
func TestTLSConfig(t *testing.T) {
	from := func(m map[string]string) (Config, error) {
		m["DMGRID_REDIS_URL"], m["DMGRID_SESSION_ADDR"] = "redis://127.0.0.1:6379/0", "dns:///session:9090"
		return ConfigFromEnv(env(m))
	}
	grpctlstest.CheckServerSettings(t, "notifier", func(m map[string]string) (grpctls.ServerConfig, string, error) {
		c, err := from(m)
		return c.GRPCTLS, c.HealthAddr, err
	})
	ca := grpctlstest.NewCA(t, "notifier")
	ccert, ckey := ca.Client(t, "notifier-client")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	c, err := from(map[string]string{"DMGRID_SESSION_TLS_CA": ca.CAFile, "DMGRID_SESSION_TLS_CERT": ccert,
		"DMGRID_SESSION_TLS_KEY": ckey, "DMGRID_SESSION_TLS_SERVER_NAME": "session.internal"})
	if err != nil || c.SessionTLS != (grpctls.ClientConfig{CAFile: ca.CAFile, CertFile: ccert, KeyFile: ckey, ServerName: "session.internal"}) {
		t.Fatalf("%+v %v", c.SessionTLS, err)
	}
	failing := func(m map[string]string) error { _, err := from(m); return err }
	grpctlstest.ErrorNames(t, failing, map[string]string{"DMGRID_SESSION_TLS_CERT": ccert}, "DMGRID_SESSION_TLS_CERT", "DMGRID_SESSION_TLS_KEY")
	grpctlstest.ErrorNames(t, failing, map[string]string{"DMGRID_SESSION_TLS_CA": missing}, "DMGRID_SESSION_TLS_CA", missing)
}
