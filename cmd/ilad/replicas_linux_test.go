//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecondMapsrvReplica: an ilad given two mapsrv addresses whose first
// does not answer (nothing listens there) registers its task with the
// second, says so in its log and metrics, and keeps using it.
func TestSecondMapsrvReplica(t *testing.T) {
	dead := "[fd00:ff::1]:7489"
	l := newLab(t, 1, map[int][]string{1: {"-mapsrv", dead + "," + mapsrvReg.String(), "-heartbeat", "200ms"}})
	n1 := l.nves[0]
	start := time.Now()
	tk := l.addTask(n1, "r1", 0x3001) // attach waits for the first registration
	took := time.Since(start)
	l.waitMapping(tk, n1)
	if lg := l.log.String(); !strings.Contains(lg, `msg="mapsrv replica not answering; switching to the next"`) || !strings.Contains(lg, "from="+dead+" to="+mapsrvReg.String()) {
		t.Errorf("no log line of the switch to %v", mapsrvReg)
	}
	m := l.metrics(n1)
	for _, want := range []string{
		`ila_ilad_mapsrv_replica_current{address="` + mapsrvReg.String() + `"} 1`,
		`ila_ilad_mapsrv_replica_current{address="` + dead + `"} 0`,
		`ila_regproto_client_messages_total{counter="switches"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics: no %s", want)
		}
	}
	t.Logf("registered through the second address %v after the attach", took.Round(time.Millisecond))
	// Heartbeats keep going to the working replica: no switch back.
	time.Sleep(time.Second)
	if m := l.metrics(n1); !strings.Contains(m, `ila_regproto_client_messages_total{counter="switches"} 1`) {
		t.Errorf("switched again while the second replica answers:\n%s", grepLines(m, "ila_regproto_client_messages_total"))
	}
	// A restart starts with the replica the last run switched to, not
	// with the dead first address again (mapsrvorder.go).
	file := filepath.Join(l.dir, n1.name+".tasks.mapsrv")
	if b, err := os.ReadFile(file); err != nil || strings.TrimSpace(string(b)) != mapsrvReg.String() {
		t.Errorf("%s: %q, %v; want %v", file, b, err, mapsrvReg)
	}
	l.stop(n1)
	l.start(n1)
	time.Sleep(time.Second) // heartbeats and the restored task's registration
	m = l.metrics(n1)
	for _, want := range []string{
		`ila_ilad_mapsrv_replica_current{address="` + mapsrvReg.String() + `"} 1`,
		`ila_regproto_client_messages_total{counter="switches"} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("after a restart, metrics: no %s\n%s%s", want, grepLines(m, "ila_ilad_mapsrv_replica_current"), grepLines(m, "ila_regproto_client_messages_total"))
		}
	}
	if lg := l.log.String(); !strings.Contains(lg, `msg="starting with the mapsrv replica the last run switched to"`) {
		t.Error("no log line of the restart starting with the remembered replica")
	}
}
