//go:build linux

package lab

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestClassifyVMLoss(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	// Guest stops at 100 ms, resumes at 110, the old NVE redirects at 115.
	v := &VMReport{GuestStopped: ms(100), GuestResumed: ms(110), Committed: ms(111)}
	ping := &FlowStats{Name: "ping", Interval: Duration(10 * time.Millisecond), FirstSent: t0,
		LostSeqs: []int{9, 10, 11, 12, 20}, Lost: 5,
		sentAt:   map[int]time.Time{9: ms(95), 10: ms(105), 11: ms(112), 12: ms(118)}, // 20: estimated at 200 ms
		Arrivals: []Arrival{{Seq: 8, Sent: ms(85)}, {Seq: 21, Sent: ms(210)}}}
	r := &Report{VM: v, Move: &MoveResult{From: "nve3"}, Flows: []*FlowStats{ping},
		Convergence: []NodeUpdate{{Node: "nve3", Seen: true, Applied: ms(115)}, {Node: "nve1", Seen: true, Applied: ms(300)}},
		DNSChanged:  true}
	v.CommittedBy = "frame"
	r.judgeVM()
	want := []VMFlowLoss{{Flow: "ping", Lost: 5, BeforeStop: 1, InPause: 1, ResumeToSwitch: 1, AfterSwitch: 2}}
	if diff := cmp.Diff(want, v.Loss); diff != "" {
		t.Errorf("loss (-want +got):\n%s", diff)
	}
	if !v.OldNVERedirect.Equal(ms(115)) {
		t.Errorf("old NVE redirect at %v, want +115ms", v.OldNVERedirect.Sub(t0))
	}
	if len(r.Problems) != 1 {
		t.Errorf("problems %q, want one for the 2 packets lost after the switch", r.Problems)
	}
	// Without them the migration passes.
	ping.LostSeqs, ping.Lost = ping.LostSeqs[:3], 3
	r.Problems = nil
	r.judgeVM()
	if len(r.Problems) != 0 || r.Verdict[:4] != "PASS" {
		t.Errorf("verdict %q, problems %q", r.Verdict, r.Problems)
	}
	// The flow's tail is excused once the path worked after the switch...
	ping.LostSeqs, ping.Lost = []int{22, 23}, 2
	ping.sentAt = map[int]time.Time{22: ms(220), 23: ms(230)}
	r.Problems = nil
	r.judgeVM()
	if l := v.Loss[0]; l.AtEnd != 2 || l.AfterSwitch != 0 || len(r.Problems) != 0 {
		t.Errorf("tail loss: %+v, problems %q", l, r.Problems)
	}
	// ... and not when nothing sent after it came back.
	ping.Arrivals = ping.Arrivals[:1]
	r.Problems = nil
	r.judgeVM()
	if l := v.Loss[0]; l.AtEnd != 0 || l.AfterSwitch != 2 || len(r.Problems) != 1 {
		t.Errorf("loss after a broken switch: %+v, problems %q", l, r.Problems)
	}
}
