//go:build linux

package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/mapsrv"
)

// secureAPI puts the local API of a HOST:PORT -api behind its bearer
// tokens and, with -api-cert, TLS (config.checkAPI made sure they are
// given where needed); a unix socket is left as it is.
func secureAPI(cfg *config, ln net.Listener, h http.Handler, log *slog.Logger) (net.Listener, http.Handler, error) {
	if cfg.APITokenFile != "" {
		tr, err := mapsrv.ReadTokenRoles(cfg.APITokenFile)
		if err != nil {
			return nil, nil, fmt.Errorf("-api-token-file: %w", err)
		}
		h = locator.RequireToken(h, tr.Admin, tr.ReadOnly)
	}
	if cfg.APICert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.APICert, cfg.APIKey)
		if err != nil {
			return nil, nil, fmt.Errorf("-api-cert/-api-key: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		log.Info("local api serves TLS", "addr", cfg.API, "cert", cfg.APICert)
	}
	return ln, h, nil
}
