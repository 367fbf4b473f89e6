// Package etcdtlstest writes a throwaway CA, an etcd server certificate
// (for 127.0.0.1 and ::1) and a client certificate for tests of etcd over
// TLS with client-certificate authentication.
package etcdtlstest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/internal/etcdembed"
)

// Certs are PEM file paths.
type Certs struct {
	CA                    string // the CA certificate (trusted by both sides)
	ServerCert, ServerKey string
	ClientCert, ClientKey string
	OtherCA               string // a CA that signed neither
}

// Write creates the files in a temporary directory of t.
func Write(t testing.TB) Certs {
	t.Helper()
	dir := t.TempDir()
	caKey, caCert := newCA(t, "etcdtlstest CA")
	_, other := newCA(t, "unrelated CA")
	c := Certs{CA: filepath.Join(dir, "ca.crt"), OtherCA: filepath.Join(dir, "other-ca.crt")}
	writePEM(t, c.CA, "CERTIFICATE", caCert.Raw)
	writePEM(t, c.OtherCA, "CERTIFICATE", other.Raw)
	c.ServerCert, c.ServerKey = leaf(t, dir, "server", caKey, caCert, x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback})
	c.ClientCert, c.ClientKey = leaf(t, dir, "client", caKey, caCert, x509.ExtKeyUsageClientAuth, nil)
	return c
}

func newCA(t testing.TB, cn string) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return k, c
}

func leaf(t testing.TB, dir, name string, caKey *ecdsa.PrivateKey, ca *x509.Certificate, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writePEM(t, cert, "CERTIFICATE", der)
	writePEM(t, key, "EC PRIVATE KEY", kb)
	return cert, key
}

func writePEM(t testing.TB, path, typ string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Start runs an embedded etcd member serving https on 127.0.0.1 that
// demands client certificates signed by the CA of the returned Certs.
func Start(t testing.TB) (Certs, []string) {
	t.Helper()
	c := Write(t)
	srv, err := etcdembed.Start(context.Background(), etcdembed.Config{
		Dir: t.TempDir(), ClientURLs: []string{"https://127.0.0.1:0"}, UnsafeNoFsync: true,
		ServerCert: c.ServerCert, ServerKey: c.ServerKey, ClientCA: c.CA,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return c, srv.Endpoints()
}
