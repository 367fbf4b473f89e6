//go:build linux

package lab

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestChaosJudge: what a scenario's result counts as a problem: loss
// beyond the justified window (on either ping), a broken TCP stream, a
// move whose report the store contradicts, an inconsistent lab.
func TestChaosJudge(t *testing.T) {
	ok := &Consistency{OK: true}
	tcp := func(err string) []*FlowStats { return []*FlowStats{{Name: "ping"}, {Name: "tcp", Error: err}} }
	for _, tc := range []struct {
		name string
		r    ChaosResult
		want []string
	}{
		{"clean", ChaosResult{TCPSurvived: true, Flows: tcp(""), Consistency: ok}, nil},
		{"loss without a window", ChaosResult{PingLost: 1, PingSent: 100, TCPSurvived: true, Consistency: ok},
			[]string{"ping lost 1 of 100"}},
		{"loss within the window", ChaosResult{Window: Duration(1300 * time.Millisecond), PingLost: 130, PingSent: 400, MoverLost: 129, MoverSent: 400, TCPSurvived: true, Consistency: ok}, nil},
		{"loss beyond the window", ChaosResult{Window: Duration(time.Second), PingLost: 101, PingSent: 400, MoverLost: 102, MoverSent: 400, TCPSurvived: true, Consistency: ok},
			[]string{"ping lost 101 of 400, more than the 1s the victim's link was down (100)", "the victim's ping towards the moved task lost 102 of 400"}},
		{"tcp reset", ChaosResult{Flows: tcp("connection reset by peer"), Consistency: ok},
			[]string{"TCP stream broke: connection reset by peer"}},
		{"move reports contradicted", ChaosResult{TCPSurvived: true, FailedButHappened: 1, OKButNotHappened: 2, Consistency: ok},
			[]string{"1 moves reported failure and happened anyway", "2 moves reported success and did not happen"}},
		{"inconsistent", ChaosResult{TCPSurvived: true, Consistency: &Consistency{Settled: Duration(15 * time.Second), Problems: []string{"nve2: local tasks [] , the store's on nve2 [t2]"}}},
			[]string{"inconsistent after 15s: nve2: local tasks [] , the store's on nve2 [t2]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.r
			r.judge()
			if diff := cmp.Diff(tc.want, r.Problems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			if pass := r.Verdict == "PASS"; pass != (len(tc.want) == 0) {
				t.Errorf("verdict %q with problems %v", r.Verdict, r.Problems)
			}
		})
	}
}

func TestParseDatapathCounters(t *testing.T) {
	in := `# HELP ila_datapath_packets_total Datapath packet counters (summed over CPUs).
# TYPE ila_datapath_packets_total counter
ila_datapath_packets_total{counter="drop_miss"} 3
ila_datapath_packets_total{counter="translated"} 1.234567e+06
ila_datapath_packets_total{counter="bad"} nonsense
ila_datapath_packets_total{counter="neg"} -1
ila_agent_pulled_mappings 7
`
	got, err := parseDatapathCounters(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"drop_miss": 3, "translated": 1234567}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
	before := map[string]map[string]uint64{"nve1": {"drop_miss": 3, "drop_tenant": 1, "translated": 5}, "nve2": {"drop_miss": 0}}
	after := map[string]map[string]uint64{"nve1": {"drop_miss": 4, "drop_tenant": 1, "translated": 9}, "nve2": {"drop_miss": 2, "drop_error": 1}, "nve3": {"drop_miss": 9}}
	if diff := cmp.Diff([]string{"nve1 drop_miss +1", "nve2 drop_error +1", "nve2 drop_miss +2"}, dropDeltas(before, after)); diff != "" {
		t.Errorf("deltas (-want +got):\n%s", diff)
	}
}
