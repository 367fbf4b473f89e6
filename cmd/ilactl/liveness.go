package main

import (
	"strconv"
	"time"

	"github.com/ilamesh/ilamesh/mapsrv"
)

// livenessColumns are the STATE, EPOCH, LAST-HEARD and SINCE columns of an
// NVE (docs/FAILOVER.md); dashes for an NVE that never sent a heartbeat.
func livenessColumns(l *mapsrv.NVELiveness) []string {
	if l == nil {
		return []string{"-", "-", "-", "-"}
	}
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	return []string{string(l.State), strconv.FormatUint(uint64(l.Epoch), 10), ts(l.LastHeard), ts(l.Since)}
}
