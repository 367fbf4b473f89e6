package dnsbridge_test

import (
	"context"
	"log"
	"log/slog"
	"net/netip"
	"time"

	"github.com/ilamesh/ilamesh/dnsbridge"
	"github.com/ilamesh/ilamesh/ila"
)

// A Source is usually mapsrv/etcdstore's Watcher; cmd/dnsbridge and
// cmd/mapsrv plug it in.
type staticSource []ila.Event

func (s staticSource) Watch(ctx context.Context, fn func(ila.Event)) error {
	for _, ev := range s {
		fn(ev)
	}
	<-ctx.Done()
	return nil
}

// Example embeds the bridge in another daemon: build it from a Config and
// run it next to the daemon's other loops until the context ends.
func Example() {
	srv, err := dnsbridge.New(dnsbridge.Config{
		Zone:          "ila.example.",
		TTL:           5 * time.Second,
		Listen:        "127.0.0.1:0",
		AllowTransfer: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Logger:        slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	src := staticSource{{Type: ila.EventSynced, Revision: 1}}
	if err := srv.Run(ctx, src); err != nil {
		log.Fatal(err)
	}
}
