package lab

import (
	"bytes"
	"encoding/xml"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ilamesh/ilamesh/ila"
)

func TestPlan(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"task 1 SIR", SIROf(1).String(), "fd00:5151::2000:0:0:1"},
		{"task 250 SIR", SIROf(250).String(), "fd00:5151::2000:0:0:fa"},
		{"locator 1", LocatorOf(1).String(), "fd00:1c:0:1"},
		{"locator 200", LocatorOf(200).String(), "fd00:1c:0:c8"},
		{"underlay 2", UnderlayOf(2).String(), "fd00:ff:0:2::2"},
		{"fabric side 2", fabricSide(2).String(), "fd00:ff:0:2::1"},
		{"underlay net 3", underlayNet(3).String(), "fd00:ff:0:3::/64"},
		{"ipv4 7", IPv4Of(7).String(), "10.100.0.7"},
		{"ipv4 task SIR", SIRv4Of(7).String(), "fd00:5151::4000:64:a64:7"},
		{"task mac", taskMAC(258).String(), "02:7a:00:00:01:02"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s = %s, want %s", tc.name, tc.got, tc.want)
		}
	}
	// Every identifier of the plan is valid under the domain's mode and its
	// SIR address is in the SIR prefix.
	sir, err := ila.SIRPrefixFrom(SIRPrefix)
	if err != nil {
		t.Fatal(err)
	}
	d := ila.Domain{Name: Domain, SIR: sir, Csum: ila.CsumNeutralMap}
	for n := 1; n <= 250; n++ {
		for _, a := range []netip.Addr{SIROf(n), SIRv4Of(n)} {
			if !SIRPrefix.Contains(a) {
				t.Errorf("%s not in %s", a, SIRPrefix)
			}
			if err := d.CheckIdentifier(ila.IdentifierOf(a)); err != nil {
				t.Errorf("identifier of %s: %v", a, err)
			}
			if _, err := d.ToILA(a, LocatorOf(1)); err != nil {
				t.Errorf("translate %s: %v", a, err)
			}
		}
	}
}

func TestSummarise(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	arr := func(seq, recvMs int) Arrival { return Arrival{Seq: seq, Sent: ms(seq * 10), Recv: ms(recvMs)} }
	type sum struct {
		Received, Lost, Duplicates, Reordered int
		LongestGap                            Duration
		LostSeqs                              []int
	}
	tests := []struct {
		name     string
		sent     int
		arrivals []Arrival
		lastSent time.Time
		want     sum
	}{
		{"all in order", 3, []Arrival{arr(0, 1), arr(1, 11), arr(2, 21)}, ms(20), sum{Received: 3, LongestGap: Duration(10 * time.Millisecond)}},
		{"one lost", 4, []Arrival{arr(0, 1), arr(1, 11), arr(3, 31)}, ms(30), sum{Received: 3, Lost: 1, LongestGap: Duration(20 * time.Millisecond), LostSeqs: []int{2}}},
		{"reordered", 3, []Arrival{arr(0, 1), arr(2, 21), arr(1, 22)}, ms(20), sum{Received: 3, Reordered: 1, LongestGap: Duration(20 * time.Millisecond)}},
		{"duplicate", 2, []Arrival{arr(0, 1), arr(1, 11), arr(1, 12)}, ms(10), sum{Received: 2, Duplicates: 1, LongestGap: Duration(10 * time.Millisecond)}},
		{"tail lost", 5, []Arrival{arr(0, 1), arr(1, 11)}, ms(40), sum{Received: 2, Lost: 3, LongestGap: Duration(29 * time.Millisecond), LostSeqs: []int{2, 3, 4}}},
		{"nothing", 2, nil, ms(10), sum{Lost: 2, LongestGap: Duration(10 * time.Millisecond), LostSeqs: []int{0, 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &FlowStats{Sent: tc.sent, Arrivals: tc.arrivals, FirstSent: t0}
			s.summarise(tc.lastSent)
			got := sum{s.Received, s.Lost, s.Duplicates, s.Reordered, s.LongestGap, s.LostSeqs}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"defaults", Config{}, ""},
		{"long name", Config{Name: "abcdefghijklmnop"}, "longer than 15"},
		{"bad name", Config{Name: "Lab_1"}, "only a-z"},
		{"too many nves", Config{NVEs: 201}, "want 1..200"},
		{"too many tasks", Config{NVEs: 10, TasksPerNVE: 30}, "want 1..25"},
		{"negative tasks", Config{TasksPerNVE: -1}, "tasks per nve"},
		{"replicas on the embedded etcd", Config{MapsrvReplicas: 2, EtcdMembers: 1}, "use --etcd-members 3"},
		{"too many replicas", Config{MapsrvReplicas: 4}, "want 1..3"},
		{"replicas underlay only", Config{MapsrvReplicas: 2, UnderlayOnly: true}, "not with underlay-only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				if tc.cfg.Name != DefaultName || tc.cfg.StateDir != DefaultDir || tc.cfg.NVEs != 3 || tc.cfg.TasksPerNVE != 1 {
					t.Errorf("defaults not filled: %+v", tc.cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("validate error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestReplicasNeedAnEtcdCluster: more than one mapsrv replica runs the
// lab's etcd cluster (3 members unless given).
func TestReplicasNeedAnEtcdCluster(t *testing.T) {
	for _, tc := range []struct{ members, want int }{{0, 3}, {5, 5}} {
		c := Config{MapsrvReplicas: 2, EtcdMembers: tc.members}
		if err := c.validate(); err != nil || c.EtcdMembers != tc.want {
			t.Errorf("replicas 2, members %d: %v, members %d; want %d", tc.members, err, c.EtcdMembers, tc.want)
		}
	}
}

func TestTimeline(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	f := &FlowStats{Name: "ping <a> & b", Sent: 50, FirstSent: ms(-200)}
	for i := range 50 {
		if i == 25 {
			continue
		}
		f.Arrivals = append(f.Arrivals, Arrival{Seq: i, Sent: ms(-200 + 10*i), Recv: ms(-200 + 10*i + 1)})
	}
	f.summarise(ms(290))
	r := &Report{
		Move:        &MoveResult{Task: "t3", From: "nve3", To: "nve2", Start: ms(0), LinkMoved: ms(15), Committed: ms(40), Done: ms(45)},
		Flows:       []*FlowStats{f},
		Convergence: []NodeUpdate{{Node: "nve1", Seen: true, Applied: ms(42)}, {Node: "nve9", Note: "no traffic"}},
	}
	r.judge()
	var b bytes.Buffer
	if err := r.Timeline(&b); err != nil {
		t.Fatal(err)
	}
	// Well-formed XML, one bar per millisecond with an arrival in the
	// window, and the marks.
	dec := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	rects := 0
	var texts []string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("timeline is not well-formed XML: %v", err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			for _, a := range e.Attr {
				if e.Name.Local == "rect" && a.Name.Local == "class" && a.Value == "bar" {
					rects++
				}
			}
		case xml.CharData:
			texts = append(texts, string(e))
		}
	}
	all := strings.Join(texts, "|")
	for _, want := range []string{"ping <a> & b", "commit (+40.0ms)", "link moved (+15.0ms)", "nve1 updated (+42.0ms)", "lost 1/50"} {
		if !strings.Contains(all, want) {
			t.Errorf("timeline lacks %q", want)
		}
	}
	// Window: start-150ms .. done+200ms covers arrivals of seq 5..44 but 25;
	// the zoomed one (the marks, widened to 100 ms: -29ms .. +71ms) those of
	// seq 17..27 but 25.
	if want := 39 + 10; rects != want {
		t.Errorf("%d bars, want %d (one per arrival in either window)", rects, want)
	}
	if !strings.HasPrefix(r.Verdict, "FAIL") {
		t.Errorf("verdict %q, want FAIL for a lost packet", r.Verdict)
	}
}
