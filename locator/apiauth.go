package locator

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ilamesh/ilamesh/internal/bearer"
)

// A local API on a TCP address (ilad -api HOST:PORT, for operators'
// tools such as ilactl where and monitor) wants bearer tokens
// (RequireToken) and, off loopback, TLS; a unix socket is protected by
// its file mode.

// RequireToken answers 401 to requests without one of the tokens, and 403
// to a read-only token's requests that are not GET or HEAD.
func RequireToken(next http.Handler, admin, readOnly []string) http.Handler {
	tokens := bearer.New(admin, readOnly)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _, role := tokens.Check(r)
		if role == bearer.None {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ilad"`)
			writeErr(w, http.StatusUnauthorized, errors.New("local API: a bearer token is required (Authorization: Bearer TOKEN)"))
			return
		}
		if !bearer.Allowed(role, r.Method) {
			writeErr(w, http.StatusForbidden, errors.New("local API: a read-only token cannot change anything"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ClientOptions secure a Client of a TCP local API.
type ClientOptions struct {
	// Token is sent as a bearer token (empty: none).
	Token string
	// TLS, if set, makes the client speak HTTPS (an https:// address does
	// too, with the system's roots when TLS is nil).
	TLS *tls.Config
}

// NewClientWith is NewClient for an address that may also be a URL
// (http://HOST:PORT or https://HOST:PORT, what ilad -api-advertise
// publishes), with a token and TLS settings. The options do not apply to
// a unix socket.
func NewClientWith(addr string, o ClientOptions) (*Client, error) {
	scheme := ""
	for _, s := range []string{"http://", "https://"} {
		if rest, ok := strings.CutPrefix(addr, s); ok {
			scheme, addr = s, strings.TrimSuffix(rest, "/")
		}
	}
	c, err := NewClient(addr)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(c.base, "http://ilad") && scheme == "" {
		return c, nil // a unix socket
	}
	if scheme == "" && o.TLS != nil || scheme == "https://" {
		c.base = "https://" + strings.TrimPrefix(c.base, "http://")
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = o.TLS
		c.hc = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	c.token = o.Token
	return c, nil
}

// CheckAPIAddr reports what a TCP local API address needs: tokens always,
// TLS off loopback (a socket path needs nothing).
func CheckAPIAddr(addr string, tokens, tlsOn bool) error {
	if strings.HasPrefix(addr, "/") || strings.HasPrefix(addr, "unix:") {
		if tokens || tlsOn {
			return fmt.Errorf("local API %s is a unix socket (its file mode protects it): tokens and TLS are for a HOST:PORT address", addr)
		}
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("local API address %q: want a socket path or HOST:PORT", addr)
	}
	if !tokens {
		return fmt.Errorf("local API %s listens on TCP: give -api-token-file (anyone who reaches it could attach and detach tasks)", addr)
	}
	ip := net.ParseIP(host)
	if !tlsOn && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("local API %s is off loopback: give -api-cert and -api-key (the tokens would cross the network in clear)", addr)
	}
	return nil
}
