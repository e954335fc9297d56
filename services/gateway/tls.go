package gateway

import (
	"crypto/tls"
	"log/slog"

	"github.com/dmgrid/dmgrid/internal/certfile"
	"github.com/dmgrid/dmgrid/internal/grpctls"
)

// serverTLS is the HTTPS listener's configuration: TLS 1.2 minimum, the certificate and key
// of DMGRID_TLS_CERT_FILE/_KEY_FILE, reloaded when the files change (a renewed Secret; a
// renewal that cannot be used is logged and the last good pair kept), and, with
// DMGRID_TLS_CLIENT_CA_FILE, device certificates verified when given (that pool is read once).
func serverTLS(c Config, log *slog.Logger) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSClientCAs != "" {
		pool, err := grpctls.LoadPool(c.TLSClientCAs, "DMGRID_TLS_CLIENT_CA_FILE")
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	pair, err := certfile.Load(c.TLSCertFile, c.TLSKeyFile, certfile.Options{Interval: c.TLSReloadInterval, Log: log})
	if err != nil {
		return nil, err
	}
	cfg.GetCertificate = pair.GetCertificate
	return cfg, nil
}
