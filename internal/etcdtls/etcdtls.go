// Package etcdtls builds the etcd client TLS settings every daemon shares:
// a client certificate (etcd's client-cert-auth) and a CA bundle for the
// cluster's server certificates.
package etcdtls

import (
	"crypto/tls"
	"errors"
	"fmt"

	"go.etcd.io/etcd/client/pkg/v3/transport"
)

// Files names the PEM files of an etcd client's TLS setup. The zero value
// means no TLS settings (plain http endpoints, or https with the system's
// roots).
type Files struct {
	Cert string `json:"etcd_cert,omitempty"` // client certificate
	Key  string `json:"etcd_key,omitempty"`  // its private key
	CA   string `json:"etcd_ca,omitempty"`   // CA bundle for the servers
}

// IsZero reports whether no file is set.
func (f Files) IsZero() bool { return f == Files{} }

// Config returns the client TLS configuration for f, nil for the zero
// value. A certificate needs its key and a key its certificate; every file
// is read now, so a typo fails at start, not at the first dial.
func (f Files) Config() (*tls.Config, error) {
	if f.IsZero() {
		return nil, nil
	}
	if (f.Cert == "") != (f.Key == "") {
		return nil, errors.New("etcd tls: a client certificate and its key go together (etcd cert and etcd key)")
	}
	info := transport.TLSInfo{CertFile: f.Cert, KeyFile: f.Key, TrustedCAFile: f.CA}
	c, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("etcd tls: %w", err)
	}
	return c, nil
}
