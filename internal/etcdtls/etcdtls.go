// Package etcdtls builds the etcd client TLS settings every daemon shares:
// a client certificate (etcd's client-cert-auth) and a CA bundle for the
// cluster's server certificates; and the reconnect settings of the
// watchers (Resume).
package etcdtls

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
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

// Resume are the etcd client settings of the long-running watchers (ilad
// in both roles, dnsbridge): gRPC reconnects at most 500 ms apart (its
// default backoff grows to 2 minutes, so a watch resumed seconds after an
// etcd restart: issue 18 weakness 6), and keepalives find a dead
// connection within about 15 s (etcd refuses pings more often than every
// 5 s by default).
func Resume(c *clientv3.Config) {
	c.DialKeepAliveTime = 10 * time.Second
	c.DialKeepAliveTimeout = 5 * time.Second
	c.DialOptions = append(c.DialOptions, grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
		MinConnectTimeout: 2 * time.Second,
	}))
}
