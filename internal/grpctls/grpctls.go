// Package grpctls is the transport security of dmgrid's gRPC links, shared by every tier:
// the servers' TLS (DMGRID_GRPC_TLS_CERT, DMGRID_GRPC_TLS_KEY and, for mutual TLS,
// DMGRID_GRPC_TLS_CLIENT_CA) and the clients' (a CA bundle to verify the server, an optional
// client certificate, an optional server-name override), read, checked and turned into gRPC
// credentials the same way everywhere.
//
// TLS 1.2 is the minimum; Go negotiates 1.3 whenever both ends have it. There is no way to
// skip certificate verification. Every file is read and checked at start. The certificate and
// key (a server's, a client's) are then reloaded when their files change (internal/certfile:
// checked on a handshake at most every 30 s; a renewed pair that cannot be used is logged and
// the last good one kept), so a renewed Secret reaches running pods. The CA bundles are read
// once: a new CA takes effect when the process restarts.
package grpctls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/dmgrid/dmgrid/internal/certfile"
	"github.com/dmgrid/dmgrid/internal/envflag"
)

// The servers' settings (session, inventory, notifier).
const (
	EnvCert     = "DMGRID_GRPC_TLS_CERT"      // PEM certificate (chain) of the server
	EnvKey      = "DMGRID_GRPC_TLS_KEY"       // PEM private key of that certificate
	EnvClientCA = "DMGRID_GRPC_TLS_CLIENT_CA" // PEM bundle: require client certificates it signed
)

// ServerConfig is a gRPC server's TLS: off when CertFile and KeyFile are empty.
type ServerConfig struct {
	CertFile string // DMGRID_GRPC_TLS_CERT
	KeyFile  string // DMGRID_GRPC_TLS_KEY
	// ClientCAFile (DMGRID_GRPC_TLS_CLIENT_CA) turns on mutual TLS: every client must present
	// a certificate signed by one of these CAs, or its handshake fails. Read once at start.
	ClientCAFile string

	// Not settings: how often the certificate files are checked for a renewal
	// (certfile.DefaultInterval when zero; tests shorten it) and where a renewal that cannot
	// be used is logged (slog.Default() when nil).
	ReloadInterval time.Duration
	Log            *slog.Logger
}

// ReadServer reads DMGRID_GRPC_TLS_* through r (checked by ServerConfig.Validate).
func ReadServer(r *envflag.Reader) ServerConfig {
	return ServerConfig{CertFile: r.String(EnvCert, ""), KeyFile: r.String(EnvKey, ""), ClientCAFile: r.String(EnvClientCA, "")}
}

// Enabled reports whether the server serves TLS.
func (c ServerConfig) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" }

// Validate checks the settings and that the files hold a usable certificate, key and CA
// bundle; every error names its variable.
func (c ServerConfig) Validate() error {
	_, err := c.TLSConfig()
	return err
}

// TLSConfig returns the server's tls.Config, or nil when TLS is off.
func (c ServerConfig) TLSConfig() (*tls.Config, error) {
	var errs []error
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, fmt.Errorf("%s and %s go together: set both or neither", EnvCert, EnvKey))
	}
	if c.ClientCAFile != "" && !c.Enabled() {
		errs = append(errs, fmt.Errorf("%s needs %s and %s (client certificates are checked on TLS connections only)", EnvClientCA, EnvCert, EnvKey))
	}
	if len(errs) > 0 || !c.Enabled() {
		return nil, errors.Join(errs...)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	pair, err := loadPair(c.CertFile, c.KeyFile, EnvCert, EnvKey, c.ReloadInterval, c.Log)
	if err != nil {
		errs = append(errs, err)
	} else {
		cfg.GetCertificate = pair.GetCertificate
	}
	if c.ClientCAFile != "" {
		pool, err := LoadPool(c.ClientCAFile, EnvClientCA)
		if err != nil {
			errs = append(errs, err)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

// Credentials returns the server's transport credentials, or nil when TLS is off.
func (c ServerConfig) Credentials() (credentials.TransportCredentials, error) {
	cfg, err := c.TLSConfig()
	if err != nil || cfg == nil {
		return nil, err
	}
	return credentials.NewTLS(cfg), nil
}

// ClientVars names a client's four settings, for reading them and for error messages.
type ClientVars struct{ CA, Cert, Key, ServerName string }

// SessionClientVars are the settings of the links to the session workers (gateway and
// notifier, whose address is DMGRID_SESSION_ADDR).
var SessionClientVars = ClientVars{
	CA:         "DMGRID_SESSION_TLS_CA",
	Cert:       "DMGRID_SESSION_TLS_CERT",
	Key:        "DMGRID_SESSION_TLS_KEY",
	ServerName: "DMGRID_SESSION_TLS_SERVER_NAME",
}

// ClientConfig is a gRPC client's TLS: off when every field is empty. Any field turns it on;
// without CAFile the system's roots verify the server.
type ClientConfig struct {
	CAFile   string // PEM bundle that verifies the server's certificate
	CertFile string // PEM client certificate (chain), for servers that require one
	KeyFile  string // its private key
	// ServerName is the name the server's certificate must hold, instead of the host of the
	// dial target (needed when the target's host is not in the certificate).
	ServerName string

	// Not settings: how often the client certificate's files are checked for a renewal
	// (certfile.DefaultInterval when zero; tests shorten it) and where a renewal that cannot
	// be used is logged (slog.Default() when nil).
	ReloadInterval time.Duration
	Log            *slog.Logger
}

// ReadClient reads the client settings named by v through r (checked by ClientConfig.Validate).
func ReadClient(r *envflag.Reader, v ClientVars) ClientConfig {
	return ClientConfig{CAFile: r.String(v.CA, ""), CertFile: r.String(v.Cert, ""), KeyFile: r.String(v.Key, ""), ServerName: r.String(v.ServerName, "")}
}

// Enabled reports whether the client dials with TLS.
func (c ClientConfig) Enabled() bool {
	return c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" || c.ServerName != ""
}

// Validate checks the settings and that the files are usable; errors name v's variables.
func (c ClientConfig) Validate(v ClientVars) error {
	_, err := c.TLSConfig(v)
	return err
}

// TLSConfig returns the client's tls.Config, or nil when TLS is off.
func (c ClientConfig) TLSConfig(v ClientVars) (*tls.Config, error) {
	if !c.Enabled() {
		return nil, nil
	}
	var errs []error
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, fmt.Errorf("%s and %s go together: set both or neither", v.Cert, v.Key))
	}
	if _, _, err := net.SplitHostPort(c.ServerName); err == nil {
		errs = append(errs, fmt.Errorf("%s: want a host name without a port, not %q", v.ServerName, c.ServerName))
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pool, err := LoadPool(c.CAFile, v.CA)
		if err != nil {
			errs = append(errs, err)
		}
		cfg.RootCAs = pool
	}
	if c.CertFile != "" && c.KeyFile != "" {
		pair, err := loadPair(c.CertFile, c.KeyFile, v.Cert, v.Key, c.ReloadInterval, c.Log)
		if err != nil {
			errs = append(errs, err)
		} else {
			cfg.GetClientCertificate = pair.GetClientCertificate
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

// Credentials returns the client's transport credentials: TLS when enabled, else plaintext.
func (c ClientConfig) Credentials(v ClientVars) (credentials.TransportCredentials, error) {
	cfg, err := c.TLSConfig(v)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return insecure.NewCredentials(), nil
	}
	return credentials.NewTLS(cfg), nil
}

// Addresses turns a static list of host:port entries into resolver addresses. A static
// list has no host name in its dial target, so with TLS on (and no ServerName override)
// each address is verified against its own host: the server's certificate must hold that
// name or IP address.
func (c ClientConfig) Addresses(hostPorts []string) []resolver.Address {
	out := make([]resolver.Address, 0, len(hostPorts))
	for _, a := range hostPorts {
		ra := resolver.Address{Addr: a}
		if c.Enabled() && c.ServerName == "" {
			if host, _, err := net.SplitHostPort(a); err == nil {
				ra.ServerName = host
			}
		}
		out = append(out, ra)
	}
	return out
}

// Dial connects to addr, balancing round-robin over every address it resolves to: a gRPC
// target with a scheme ("dns:///session-headless:9090") as it is, or a comma-separated
// host:port list through a static resolver (each address verified against its own host,
// see Addresses). The transport is c's (plaintext when not enabled); opts are added.
func (c ClientConfig) Dial(addr string, v ClientVars, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	creds, err := c.Credentials(v)
	if err != nil {
		return nil, err
	}
	opts = append(opts, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if strings.Contains(addr, "://") {
		return grpc.NewClient(addr, opts...)
	}
	var list []string
	for _, a := range strings.Split(addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			list = append(list, a)
		}
	}
	r := manual.NewBuilderWithScheme("dmgrid-static")
	r.InitialState(resolver.State{Addresses: c.Addresses(list)})
	return grpc.NewClient(r.Scheme()+":///static", append(opts, grpc.WithResolvers(r))...)
}

// loadPair loads a certificate and key that are reloaded when their files change; errors
// (at start and in the log of a failed reload) name the variables.
func loadPair(certFile, keyFile, certVar, keyVar string, every time.Duration, log *slog.Logger) (*certfile.Pair, error) {
	return certfile.Load(certFile, keyFile, certfile.Options{Interval: every, Log: log,
		Load: func(certFile, keyFile string) (tls.Certificate, error) {
			return loadKeyPair(certFile, keyFile, certVar, keyVar)
		}})
}

func loadKeyPair(certFile, keyFile, certVar, keyVar string) (tls.Certificate, error) {
	certPEM, cerr := os.ReadFile(certFile)
	keyPEM, kerr := os.ReadFile(keyFile)
	if cerr != nil || kerr != nil {
		var errs []error
		if cerr != nil {
			errs = append(errs, fmt.Errorf("%s: %w", certVar, cerr))
		}
		if kerr != nil {
			errs = append(errs, fmt.Errorf("%s: %w", keyVar, kerr))
		}
		return tls.Certificate{}, errors.Join(errs...)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s / %s: not a PEM certificate and its private key (%s, %s): %w", certVar, keyVar, certFile, keyFile, err)
	}
	return cert, nil
}

// LoadPool reads a PEM bundle of CA certificates; errors name v (the setting) and the file.
func LoadPool(file, v string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", v, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", v, file)
	}
	return pool, nil
}
