package main

import (
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ilamesh/ilamesh/internal/etcdtls/etcdtlstest"
	"github.com/ilamesh/ilamesh/mapsrv/apiclient"
)

// TestRunAPITLS is finding 9 of issue 17: the management API serves TLS
// with --api-cert/--api-key; a client that trusts the CA talks to it, plain
// HTTP does not get an answer, and a client trusting another CA refuses the
// server.
func TestRunAPITLS(t *testing.T) {
	dir, err := os.MkdirTemp("", "mapsrv") // short: the etcd socket path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	certs := etcdtlstest.Write(t)
	tok := filepath.Join(dir, "api.token")
	if err := os.WriteFile(tok, []byte("secret-secret-secret-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	api := freePort(t, "tcp")
	_, port, _ := net.SplitHostPort(api)
	client := func(ca string) *apiclient.Client {
		t.Helper()
		tc, err := apiclient.TLSConfig(ca)
		if err != nil {
			t.Fatal(err)
		}
		c, err := apiclient.New(apiclient.Config{URL: "https://" + api, Token: "secret-secret-secret-1", HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	startWith(t, client(certs.CA), "--api-addr", net.JoinHostPort("::", port), "--api-token-file", tok,
		"--api-cert", certs.ServerCert, "--api-key", certs.ServerKey,
		"--data-dir", filepath.Join(dir, "data"), "--etcd-client-url", "unix://"+filepath.Join(dir, "c.sock"))
	if _, err := client(certs.CA).Tasks(t.Context()); err != nil {
		t.Errorf("https with the CA: %v", err)
	}
	if _, err := newClient(t, api, "secret-secret-secret-1").Tasks(t.Context()); err == nil {
		t.Error("plain http answered by a TLS API")
	}
	_, err = client(certs.OtherCA).Tasks(t.Context())
	if err == nil || errors.Is(err, apiclient.ErrUnauthorized) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("https with another CA: %v, want a certificate error", err)
	}
}

func TestRunAPITLSFlags(t *testing.T) {
	for _, args := range [][]string{{"--api-cert", "x.crt"}, {"--api-key", "x.key"}} {
		if _, err := parseFlags(args, &strings.Builder{}); err == nil || !strings.Contains(err.Error(), "go together") {
			t.Errorf("%q: %v, want an error", args, err)
		}
	}
}
