package locator_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/locatortest"
)

// TestTokenAndTLS: a TCP local API behind tokens and TLS: a read-only
// token reads, cannot attach; no token or a wrong one is refused; the
// client speaks TLS to an https URL.
func TestTokenAndTLS(t *testing.T) {
	a := newAgent(t, locator.ModePush, locatortest.NewDatapath(), locatortest.NewSource())
	const admin, ro = "admin-token-0123456789", "read-only-token-0123456789"
	srv := httptest.NewTLSServer(locator.RequireToken(a.Handler(), []string{admin}, []string{ro}))
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	client := func(tok string) *locator.Client {
		c, err := locator.NewClientWith(srv.URL, locator.ClientOptions{Token: tok, TLS: &tls.Config{RootCAs: pool}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := t.Context()
	if _, err := client(ro).Stats(ctx); err != nil {
		t.Errorf("read-only token reads: %v", err)
	}
	if _, err := client(ro).Datapath(ctx, sirP.Addr(1)); err != nil {
		t.Errorf("read-only token reads the datapath: %v", err)
	}
	var apiErr *locator.APIError
	if err := client(ro).Detach(ctx, "x"); !errors.As(err, &apiErr) || apiErr.Status != http.StatusForbidden {
		t.Errorf("read-only token detaches: %v", err)
	}
	if err := client(admin).Detach(ctx, "x"); !errors.Is(err, locator.ErrNotFound) {
		t.Errorf("admin detaches a task that is not there: %v, want not found", err)
	}
	for _, tok := range []string{"", "wrong-token-0123456789"} {
		if _, err := client(tok).Stats(ctx); !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized {
			t.Errorf("token %q: %v, want 401", tok, err)
		}
	}
	// Without the CA the server's certificate is not trusted.
	c, _ := locator.NewClientWith(srv.URL, locator.ClientOptions{Token: admin})
	if _, err := c.Stats(ctx); err == nil {
		t.Error("an untrusted certificate was accepted")
	}
}

func TestCheckAPIAddr(t *testing.T) {
	for _, tc := range []struct {
		addr        string
		tokens, tls bool
		ok          bool
	}{
		{"/run/ilad/a.sock", false, false, true},
		{"/run/ilad/a.sock", true, false, false},
		{"[::1]:7483", true, false, true},
		{"127.0.0.1:7483", true, false, true},
		{"[::1]:7483", false, false, false},
		{"[fd00::1]:7483", true, false, false},
		{"[fd00::1]:7483", true, true, true},
		{"ilad.example:7483", true, false, false},
		{"nonsense", true, true, false},
	} {
		if err := locator.CheckAPIAddr(tc.addr, tc.tokens, tc.tls); (err == nil) != tc.ok {
			t.Errorf("%s tokens %v tls %v: %v, want ok %v", tc.addr, tc.tokens, tc.tls, err, tc.ok)
		}
	}
}
