package gateway

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

func loadCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read client CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("client CA file holds no PEM certificates")
	}
	return pool, nil
}
