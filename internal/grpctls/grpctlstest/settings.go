package grpctlstest

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/dmgrid/dmgrid/internal/grpctls"
)

// ErrorNames fails t unless read(env) returns an error naming every one of names (the
// variables and files a service's start-up error must mention).
func ErrorNames(t *testing.T, read func(env map[string]string) error, env map[string]string, names ...string) {
	t.Helper()
	err := read(env)
	for _, n := range names {
		if err == nil || !strings.Contains(err.Error(), n) {
			t.Errorf("%v: want an error naming %s, got %v", env, n, err)
		}
	}
}

// CheckServerSettings checks a service's reading of its gRPC server settings:
// DMGRID_GRPC_TLS_CERT/KEY/CLIENT_CA and DMGRID_GRPC_HEALTH_ADDR are read, plaintext
// without a health port is the default, and a certificate without its key, a client CA
// without TLS or an unreadable file stops the service at start with an error naming the
// variable (and the file). read takes an environment holding only these settings (it adds
// what else the service requires) and returns what the service's configuration holds.
func CheckServerSettings(t *testing.T, service string, read func(env map[string]string) (grpctls.ServerConfig, string, error)) {
	t.Helper()
	ca := NewCA(t, service)
	cert, key := ca.Server(t, service)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	c, health, err := read(map[string]string{"DMGRID_GRPC_TLS_CERT": cert, "DMGRID_GRPC_TLS_KEY": key,
		"DMGRID_GRPC_TLS_CLIENT_CA": ca.CAFile, "DMGRID_GRPC_HEALTH_ADDR": ":9095"})
	if err != nil || c != (grpctls.ServerConfig{CertFile: cert, KeyFile: key, ClientCAFile: ca.CAFile}) || health != ":9095" {
		t.Fatalf("%s: read %+v, health %q, %v", service, c, health, err)
	}
	if c, health, err := read(map[string]string{}); err != nil || c.Enabled() || health != "" {
		t.Fatalf("%s: the default must be plaintext without a health port: %+v %q %v", service, c, health, err)
	}
	failing := func(env map[string]string) error { _, _, err := read(env); return err }
	ErrorNames(t, failing, map[string]string{"DMGRID_GRPC_TLS_CERT": cert}, "DMGRID_GRPC_TLS_CERT", "DMGRID_GRPC_TLS_KEY")
	ErrorNames(t, failing, map[string]string{"DMGRID_GRPC_TLS_KEY": key}, "DMGRID_GRPC_TLS_CERT", "DMGRID_GRPC_TLS_KEY")
	ErrorNames(t, failing, map[string]string{"DMGRID_GRPC_TLS_CLIENT_CA": ca.CAFile}, "DMGRID_GRPC_TLS_CLIENT_CA")
	ErrorNames(t, failing, map[string]string{"DMGRID_GRPC_TLS_CERT": missing, "DMGRID_GRPC_TLS_KEY": key}, "DMGRID_GRPC_TLS_CERT", missing)
	ErrorNames(t, failing, map[string]string{"DMGRID_GRPC_TLS_CERT": cert, "DMGRID_GRPC_TLS_KEY": missing}, "DMGRID_GRPC_TLS_KEY", missing)
	ErrorNames(t, failing, map[string]string{"DMGRID_GRPC_TLS_CERT": cert, "DMGRID_GRPC_TLS_KEY": key, "DMGRID_GRPC_TLS_CLIENT_CA": missing}, "DMGRID_GRPC_TLS_CLIENT_CA", missing)
}
