// Package etcdtls builds the etcd client TLS settings every daemon shares:
// a client certificate (etcd's client-cert-auth) and a CA bundle for the
// cluster's server certificates.
package etcdtls

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.etcd.io/etcd/client/pkg/v3/transport"
)

// Files names the PEM files of an etcd client's TLS setup. The zero value
// means no TLS settings (plain http endpoints, or https with the system's
// roots).
type Files struct {
	Cert string `json:"etcd_cert,omitempty"` // client certificate
	Key  string `json:"etcd_key,omitempty"`  // its private key
	CA   string `json:"etcd_ca,omitempty"`   // CA bundle for the servers
	// User and PasswordFile authenticate to an etcd with authentication
	// on (its least-privilege roles, mapsrv rbac-init): the user name and
	// a file holding its password (first line).
	User         string `json:"etcd_user,omitempty"`
	PasswordFile string `json:"etcd_password_file,omitempty"`
}

// Credentials returns the user name and the password read from
// PasswordFile; both empty when User is not set.
func (f Files) Credentials() (user, password string, err error) {
	if f.User == "" {
		if f.PasswordFile != "" {
			return "", "", errors.New("etcd credentials: a password file without a user (etcd user)")
		}
		return "", "", nil
	}
	if f.PasswordFile == "" {
		return "", "", fmt.Errorf("etcd credentials: user %s without a password file", f.User)
	}
	b, err := os.ReadFile(f.PasswordFile)
	if err != nil {
		return "", "", fmt.Errorf("etcd credentials: %w", err)
	}
	password, _, _ = strings.Cut(string(b), "\n")
	password = strings.TrimSpace(password)
	if password == "" {
		return "", "", fmt.Errorf("etcd credentials: %s holds no password", f.PasswordFile)
	}
	return f.User, password, nil
}

// IsZero reports whether no file is set.
func (f Files) IsZero() bool { return f == Files{} }

// Config returns the client TLS configuration for f, nil when no TLS file
// is set. A certificate needs its key and a key its certificate; every file
// is read now, so a typo fails at start, not at the first dial.
func (f Files) Config() (*tls.Config, error) {
	if f.Cert == "" && f.Key == "" && f.CA == "" {
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
