package session

import (
	"testing"

	"github.com/dmgrid/dmgrid/internal/grpctls"
	"github.com/dmgrid/dmgrid/internal/grpctls/grpctlstest"
)

// TestGRPCTLSConfig: the worker reads DMGRID_GRPC_TLS_* and DMGRID_GRPC_HEALTH_ADDR, and bad
// TLS settings stop it at start with an error naming the variable.
func TestGRPCTLSConfig(t *testing.T) {
	grpctlstest.CheckServerSettings(t, "session", func(env map[string]string) (grpctls.ServerConfig, string, error) {
		env["DMGRID_REDIS_URL"] = "redis://127.0.0.1:6379/0"
		c, err := ConfigFromEnv(lookup(env))
		return c.GRPCTLS, c.HealthAddr, err
	})
}
