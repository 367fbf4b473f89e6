package etcdtls_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ilamesh/ilamesh/internal/etcdtls"
	"github.com/ilamesh/ilamesh/internal/etcdtls/etcdtlstest"
)

func TestFilesErrors(t *testing.T) {
	c := etcdtlstest.Write(t)
	if cfg, err := (etcdtls.Files{}).Config(); cfg != nil || err != nil {
		t.Errorf("zero Files: %v, %v; want nil, nil", cfg, err)
	}
	for _, tc := range []struct {
		f    etcdtls.Files
		want string
	}{
		{etcdtls.Files{Cert: c.ClientCert}, "go together"},
		{etcdtls.Files{Key: c.ClientKey, CA: c.CA}, "go together"},
		{etcdtls.Files{Cert: c.ClientCert, Key: filepath.Join(t.TempDir(), "none.key")}, "etcd tls"},
		{etcdtls.Files{CA: filepath.Join(t.TempDir(), "none.crt")}, "etcd tls"},
		{etcdtls.Files{Cert: c.ClientCert, Key: c.ServerKey}, "etcd tls"}, // key of another certificate
	} {
		if _, err := tc.f.Config(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error containing %q", tc.f, err, tc.want)
		}
	}
}

// TestClientCertAuth runs a member that demands client certificates and
// connects with and without the right files.
func TestClientCertAuth(t *testing.T) {
	c, eps := etcdtlstest.Start(t)
	if len(eps) != 1 || !strings.HasPrefix(eps[0], "https://") {
		t.Fatalf("endpoints %v, want one https URL", eps)
	}
	put := func(f etcdtls.Files) error {
		tc, err := f.Config()
		if err != nil {
			return err
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: eps, TLS: tc, DialTimeout: time.Second, Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err = cli.Put(ctx, "/k", "v")
		return err
	}
	if err := put(etcdtls.Files{Cert: c.ClientCert, Key: c.ClientKey, CA: c.CA}); err != nil {
		t.Errorf("with client certificate and CA: %v", err)
	}
	if err := put(etcdtls.Files{CA: c.CA}); err == nil {
		t.Error("without a client certificate: accepted by a member with client-cert-auth")
	}
	if err := put(etcdtls.Files{Cert: c.ClientCert, Key: c.ClientKey, CA: c.OtherCA}); err == nil {
		t.Error("server certificate accepted under an unrelated CA")
	}
}

func TestCredentials(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("  s3cret \nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if u, p, err := (etcdtls.Files{User: "ilad", PasswordFile: pw}).Credentials(); u != "ilad" || p != "s3cret" || err != nil {
		t.Errorf("Credentials = %q, %q, %v", u, p, err)
	}
	if u, p, err := (etcdtls.Files{}).Credentials(); u != "" || p != "" || err != nil {
		t.Errorf("no user: %q, %q, %v", u, p, err)
	}
	for _, f := range []etcdtls.Files{{User: "ilad"}, {PasswordFile: pw}, {User: "ilad", PasswordFile: empty}, {User: "ilad", PasswordFile: filepath.Join(dir, "none")}} {
		if _, _, err := f.Credentials(); err == nil {
			t.Errorf("%+v: no error", f)
		}
	}
	// Credentials alone are no TLS settings.
	if c, err := (etcdtls.Files{User: "ilad", PasswordFile: pw}).Config(); c != nil || err != nil {
		t.Errorf("Config with only credentials: %v, %v", c, err)
	}
}
