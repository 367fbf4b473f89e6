package lab

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// NodeUpdate is when a node applied a task's new mapping.
type NodeUpdate struct {
	Node        string    `json:"node"`
	Applied     time.Time `json:"applied,omitzero"`
	AfterCommit Duration  `json:"after_commit"`
	AfterStart  Duration  `json:"after_move_start"`
	Seen        bool      `json:"seen"`
	Source      string    `json:"source"`
	Note        string    `json:"note,omitempty"`
}

// Report is what `ilalab demo` writes to report.json.
type Report struct {
	Started     time.Time    `json:"started"`
	Lab         string       `json:"lab"`
	Mode        string       `json:"mode"`
	Workload    string       `json:"workload,omitempty"`
	Move        *MoveResult  `json:"move"`
	VM          *VMReport    `json:"vm,omitempty"`
	Flows       []*FlowStats `json:"flows"`
	Convergence []NodeUpdate `json:"convergence"`
	// OldLocatorPackets counts packets seen arriving at the old NVE for the
	// old ILA address during the run; InFlightAfterCommit how many sources
	// still sent there after the commit.
	OldLocatorPackets   int       `json:"old_locator_packets"`
	InFlightAfterCommit int       `json:"sources_after_commit"`
	DNSBefore           DNSAnswer `json:"dns_before"`
	DNSAfter            DNSAnswer `json:"dns_after"`
	DNSChanged          bool      `json:"dns_changed"`
	Verdict             string    `json:"verdict"`
	Problems            []string  `json:"problems,omitempty"`
}

// DemoConfig configures RunDemo.
type DemoConfig struct {
	// Before and After are how long traffic runs before and after the move
	// [1.5s each].
	Before, After time.Duration
	// PingInterval [10ms], StreamInterval [2ms].
	PingInterval, StreamInterval time.Duration
	// Out is the directory for report.json and timeline.svg [state dir].
	Out string
	// Via is how the hot move carries the link: ViaAuto [default],
	// ViaCarry or ViaDual.
	Via string
	// Workload is "" (container tasks) or WorkloadVM (live-migrate a
	// QEMU guest; the lab needs a VM task). Its stream defaults to 10ms.
	Workload string
}

// How a hot move carries the task's link.
const (
	// ViaCarry carries the NVE end of the task's veth to the new NVE's
	// namespace (the task's interface stays; its carrier drops while the
	// kernel moves the device).
	ViaCarry = "carry"
	// ViaAuto (the default) is ViaDual where it applies (hot moves in an
	// ILA lab) and ViaCarry otherwise. Carrying the veth end
	// leaves the task without a link while the kernel moves the device
	// (15-30 ms here) and until the new NVE has attached the port, so
	// packets arriving in that window are lost (measured: median 8 of 300
	// pings at 10 ms); the second link makes the move lossless.
	ViaAuto = "auto"
	// ViaDual is make-before-break at the link: the task gets a second
	// veth to the new NVE, sends through it, the new NVE attaches and
	// registers it, and only then the old link is removed.
	ViaDual = "dual"
)

// Move modes.
const (
	MoveHot  = "hot"
	MoveWarm = "warm"
	MoveCold = "cold"
)

// MoveResult times the steps of a move (wall clock).
type MoveResult struct {
	Task      string    `json:"task"`
	From      string    `json:"from"`
	To        string    `json:"to"`
	Mode      string    `json:"mode"`
	Via       string    `json:"via,omitempty"`
	Start     time.Time `json:"start"`
	LinkMoved time.Time `json:"link_moved"`
	Committed time.Time `json:"committed"` // mapsrv's commit time (task record "updated")
	Attached  time.Time `json:"attached,omitzero"`
	Done      time.Time `json:"done"`
	// VM is the live migration of a VM task (vm_linux.go).
	VM *VMReport `json:"vm,omitempty"`
}

// DNSAnswer is what the lab's DNS bridge said about one name.
type DNSAnswer struct {
	Name  string    `json:"name"`
	AAAA  []string  `json:"aaaa,omitempty"`
	TXT   []string  `json:"txt,omitempty"`
	Error string    `json:"error,omitempty"`
	At    time.Time `json:"at"`
}

// Arrival is one packet (or chunk) that made it, by sequence number.
type Arrival struct {
	Seq  int       `json:"seq"`
	Sent time.Time `json:"sent"`
	Recv time.Time `json:"recv"`
}

// FlowStats summarises a flow.
type FlowStats struct {
	Name        string    `json:"name"`
	Kind        string    `json:"kind"`
	From        string    `json:"from"`
	To          string    `json:"to"`
	Sent        int       `json:"sent"`
	Received    int       `json:"received"`
	Lost        int       `json:"lost"`
	Duplicates  int       `json:"duplicates"`
	Reordered   int       `json:"reordered"`
	LongestGap  Duration  `json:"longest_gap"`
	GapAfter    time.Time `json:"longest_gap_after"`
	Interval    Duration  `json:"interval"`
	Bytes       int64     `json:"bytes,omitempty"`
	Error       string    `json:"error,omitempty"`
	Arrivals    []Arrival `json:"-"`
	LostSeqs    []int     `json:"lost_seqs,omitempty"`
	FirstSent   time.Time `json:"first_sent"`
	LastArrival time.Time `json:"last_arrival"`
	// sentAt, when the flow records it, is each sequence number's send
	// time (for judging when lost packets were sent).
	sentAt map[int]time.Time
}

// Duration marshals as a string like "12.3ms".
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// summarise fills the derived fields from the arrivals.
func (s *FlowStats) summarise(lastSent time.Time) {
	seen := map[int]bool{}
	arr := s.Arrivals
	sort.SliceStable(arr, func(i, j int) bool { return arr[i].Recv.Before(arr[j].Recv) })
	maxSeq := -1
	var uniq []Arrival
	for _, a := range arr {
		if seen[a.Seq] {
			s.Duplicates++
			continue
		}
		seen[a.Seq] = true
		if a.Seq < maxSeq {
			s.Reordered++
		}
		maxSeq = max(maxSeq, a.Seq)
		uniq = append(uniq, a)
	}
	s.Received = len(uniq)
	s.Lost = s.Sent - s.Received
	s.LostSeqs = nil
	for i := 0; i < s.Sent && len(s.LostSeqs) < 1000; i++ {
		if !seen[i] {
			s.LostSeqs = append(s.LostSeqs, i)
		}
	}
	prev := s.FirstSent
	for _, a := range uniq {
		if g := a.Recv.Sub(prev); Duration(g) > s.LongestGap {
			s.LongestGap, s.GapAfter = Duration(g), prev
		}
		prev = a.Recv
	}
	if len(uniq) > 0 {
		s.LastArrival = uniq[len(uniq)-1].Recv
	}
	if g := lastSent.Sub(prev); Duration(g) > s.LongestGap && s.Lost > 0 {
		s.LongestGap, s.GapAfter = Duration(g), prev
	}
}

func (r *Report) judge() {
	for _, f := range r.Flows {
		if f.Lost > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("%s lost %d of %d", f.Name, f.Lost, f.Sent))
		}
		if f.Error != "" {
			r.Problems = append(r.Problems, fmt.Sprintf("%s broke: %s", f.Name, f.Error))
		}
		if f.Reordered > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: %d reordered", f.Name, f.Reordered))
		}
	}
	if r.Mode == "ila" && !r.DNSChanged {
		r.Problems = append(r.Problems, "DNS answer did not change")
	}
	for _, c := range r.Convergence {
		if !c.Seen && !strings.HasPrefix(c.Note, "no traffic") {
			r.Problems = append(r.Problems, fmt.Sprintf("no update seen from %s (%s)", c.Node, c.Note))
		}
	}
	if len(r.Problems) == 0 {
		r.Verdict = "PASS: the move lost nothing"
	} else {
		r.Verdict = "FAIL: " + strings.Join(r.Problems, "; ")
	}
}

// Text writes the report in plain words.
func (r *Report) Text(w io.Writer) {
	fmt.Fprintf(w, "ILA lab demo (%s), %s\n\n", r.Mode, r.Started.UTC().Format(time.RFC3339))
	if m := r.Move; m != nil && r.VM != nil {
		fmt.Fprintf(w, "Live migration of VM %s from %s to %s.\n", m.Task, m.From, m.To)
		r.vmText(w)
	} else if m != nil {
		fmt.Fprintf(w, "Move: %s from %s to %s (%s, link %s). After the start: mapping committed at %v, link carried over (or second link in use) at %v, task attached at the new NVE at %v.\n\n",
			m.Task, m.From, m.To, m.Mode, m.Via, m.Committed.Sub(m.Start).Round(10*time.Microsecond), m.LinkMoved.Sub(m.Start).Round(10*time.Microsecond), m.Attached.Sub(m.Start).Round(10*time.Microsecond))
	}
	for _, f := range r.Flows {
		fmt.Fprintf(w, "%s (every %v):\n", f.Name, time.Duration(f.Interval))
		fmt.Fprintf(w, "  sent %d, received %d, lost %d, duplicates %d, reordered %d\n", f.Sent, f.Received, f.Lost, f.Duplicates, f.Reordered)
		fmt.Fprintf(w, "  longest gap between arrivals %v\n", time.Duration(f.LongestGap).Round(10*time.Microsecond))
		if f.Error != "" {
			fmt.Fprintf(w, "  connection error: %s\n", f.Error)
		}
		if len(f.LostSeqs) > 0 {
			fmt.Fprintf(w, "  lost sequence numbers: %v\n", f.LostSeqs)
		}
	}
	if len(r.Convergence) > 0 {
		fmt.Fprintln(w, "\nConvergence (time the new mapping was applied, after the commit):")
		for _, c := range r.Convergence {
			if c.Seen {
				fmt.Fprintf(w, "  %-8s %9v  (%s)\n", c.Node, time.Duration(c.AfterCommit).Round(10*time.Microsecond), c.Source)
			} else {
				fmt.Fprintf(w, "  %-8s not seen (%s)\n", c.Node, c.Note)
			}
		}
	}
	if r.DNSBefore.Name != "" {
		fmt.Fprintf(w, "\nDNS %s AAAA (TXT):\n  before: %s (%s)\n  after:  %s (%s)\n", r.DNSBefore.Name,
			strings.Join(r.DNSBefore.AAAA, ","), strings.Join(r.DNSBefore.TXT, " "),
			strings.Join(r.DNSAfter.AAAA, ","), strings.Join(r.DNSAfter.TXT, " "))
		if r.DNSChanged {
			fmt.Fprintln(w, "  the answer followed the move")
		} else {
			fmt.Fprintln(w, "  the answer did NOT change")
		}
	}
	fmt.Fprintf(w, "\n%s\n", r.Verdict)
	if m := r.Move; m != nil && m.Via == ViaCarry && len(r.Problems) > 0 {
		fmt.Fprintln(w, "(carrying the veth end drops the task's carrier while the kernel moves the device, and the new NVE\n"+
			"must attach the port before anything reaches the task; `ilalab demo --via dual` moves make-before-break)")
	}
}
