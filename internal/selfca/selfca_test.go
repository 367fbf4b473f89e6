package selfca_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/internal/selfca"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	f, err := selfca.Write(dir, []netip.Addr{netip.MustParseAddr("fd00:ff:c0::2")}, []string{"mapsrv"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(f.Key); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file %s: %v, mode %v; want 0600", f.Key, err, st.Mode())
	}
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no certificate in the CA file")
	}
	for _, name := range []string{"fd00:ff:c0::2", "mapsrv"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other"}); err == nil {
		t.Error("the certificate verifies for a name it was not made for")
	}
	other, err := selfca.Write(t.TempDir(), nil, []string{"mapsrv"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherPEM, _ := os.ReadFile(other.CA)
	otherPool := x509.NewCertPool()
	otherPool.AppendCertsFromPEM(otherPEM)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: otherPool, DNSName: "mapsrv"}); err == nil {
		t.Error("another CA verifies the certificate")
	}
}
