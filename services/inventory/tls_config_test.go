package inventory

import (
	"testing"

	"github.com/dmgrid/dmgrid/internal/grpctls"
	"github.com/dmgrid/dmgrid/internal/grpctls/grpctlstest"
)

// TestGRPCTLSConfig: the inventory reads DMGRID_GRPC_TLS_* and DMGRID_GRPC_HEALTH_ADDR, and
// bad TLS settings stop it at start with an error naming the variable.
func TestGRPCTLSConfig(t *testing.T) {
	grpctlstest.CheckServerSettings(t, "inventory", func(env map[string]string) (grpctls.ServerConfig, string, error) {
		env["DMGRID_REDIS_URL"], env["DMGRID_NATS_URL"] = "redis://127.0.0.1:6379/0", "nats://127.0.0.1:4222"
		c, err := ConfigFromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		return c.GRPCTLS, c.HealthAddr, err
	})
}
