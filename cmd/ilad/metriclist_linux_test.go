//go:build linux

package main

import (
	"testing"

	"github.com/ilamesh/ilamesh/internal/metriclist"
)

// TestMetricNames: what ilad exports (an NVE with a task, and the router)
// passes promlint and is what deploy/grafana/metrics/ilad.txt lists.
func TestMetricNames(t *testing.T) {
	l := newLab(t, 2, nil)
	tk := l.addTask(l.nves[0], "m1", 0x1001)
	l.waitMapping(tk, l.nves[0])
	l.startRouter(1)
	metriclist.Check(t, "ilad", []byte(l.metrics(l.nves[0])), []byte(l.routerMetrics()))
}
