package lab

import (
	"fmt"
	"io"
	"net"
	"time"

	"github.com/ilamesh/ilamesh/deploy/lab/vm"
)

// TaskVM is the QEMU side of a VM task: its guest runs in a QEMU process
// in its NVE's namespace, on a tap named like the task (no task
// namespace).
type TaskVM struct {
	Image vm.Image `json:"image"`
	// Dir is the current QEMU's runtime directory (QMP socket, console,
	// log); Gen counts the QEMUs the guest ran in (one more per
	// migration), PID is the current one.
	Dir string `json:"dir"`
	Gen int    `json:"gen"`
	PID int    `json:"pid"`
}

// WorkloadVM is the demo workload that live-migrates a QEMU guest.
const WorkloadVM = "vm"

// planVMs adds n VM tasks after the others, from the last NVE backwards
// (the demo moves the last task).
func planVMs(t *Topology, n int) {
	next := len(t.Tasks)
	for i := range n {
		next++
		nve := t.NVEs[len(t.NVEs)-1-i%len(t.NVEs)]
		name := fmt.Sprintf("t%d", next)
		t.Tasks = append(t.Tasks, Task{
			Name: name, Tenant: IPv6Tenant, NVE: nve.Name, SIR: SIROf(next), Identifier: IdentifierOf(next),
			Ifname: name, MAC: vmMAC(next).String(), Index: next, VM: &TaskVM{},
		})
	}
}

// vmMAC is VM task n's guest MAC (QEMU's locally administered prefix).
func vmMAC(n int) net.HardwareAddr {
	return net.HardwareAddr{0x52, 0x54, 0x00, 0x1a, byte(n >> 8), byte(n)}
}

// VMReport is the live migration part of a demo report.
type VMReport struct {
	// QEMU's own figures (query-migrate).
	TotalTime Duration `json:"qemu_total_time"`
	Downtime  Duration `json:"qemu_downtime"`
	SetupTime Duration `json:"qemu_setup_time"`
	// GuestStopped and GuestResumed are QEMU's STOP (source) and RESUME
	// (destination) events.
	GuestStopped time.Time `json:"guest_stopped"`
	GuestResumed time.Time `json:"guest_resumed"`
	// Prepare is how long the destination's prepare took (the libvirt
	// hook's "started begin", run as libvirt runs it).
	Prepare    Duration `json:"prepare"`
	PrepareLog string   `json:"prepare_log,omitempty"`
	// FirstFrame is the kernel's arrival time of the guest's first frame
	// on the destination's tap, Committed when the destination's ilad
	// committed the task (both from ilad), CommittedBy what committed it.
	FirstFrame       time.Time `json:"first_guest_frame"`
	Committed        time.Time `json:"ilad_commit"`
	CommittedBy      string    `json:"committed_by"`
	CommitAfterFrame Duration  `json:"commit_after_first_frame"`
	FrameAfterResume Duration  `json:"first_frame_after_resume"`
	// Paused is the guest's own outage: RESUME minus STOP.
	Paused Duration `json:"guest_paused"`
	// OldNVERedirect is when the source NVE turned the task's entry into
	// an in-flight redirect (its log; the commit if not seen).
	OldNVERedirect time.Time `json:"old_nve_redirect"`
	// ResumeToRedirect is the window from the guest's resume to that
	// redirect: what arrives at the old NVE in it is lost.
	ResumeToRedirect Duration `json:"resume_to_old_nve_redirect"`
	// EarlyRedirect is when the source NVE began redirecting to the
	// destination on the guest's stop (the handover; ilad's time), before
	// the commit: then nothing arriving there after the stop is lost.
	EarlyRedirect time.Time `json:"old_nve_early_redirect,omitzero"`
	// Loss sorts each flow's lost packets by when they were sent.
	Loss       []VMFlowLoss `json:"loss"`
	ReleaseLog string       `json:"release_log,omitempty"`
}

// vmText writes the migration part of the report.
func (r *Report) vmText(w io.Writer) {
	v := r.VM
	if v == nil {
		return
	}
	at := func(t time.Time) string {
		if t.IsZero() || r.Move == nil {
			return "-"
		}
		return fmt.Sprintf("%+.1fms", float64(t.Sub(r.Move.Start))/1e6)
	}
	fmt.Fprintf(w, "Live migration (QEMU): total %v, downtime %v (QEMU's figures); guest stopped %s, resumed %s (paused %v).\n",
		time.Duration(v.TotalTime), time.Duration(v.Downtime), at(v.GuestStopped), at(v.GuestResumed), time.Duration(v.Paused).Round(10*time.Microsecond))
	if !v.EarlyRedirect.IsZero() {
		fmt.Fprintf(w, "The old NVE redirected to the new one from the guest's stop on (%s), before the commit.\n", at(v.EarlyRedirect))
	}
	for _, l := range v.Loss {
		if l.Lost > 0 {
			fmt.Fprintf(w, "%s lost %d: %d sent before the guest stopped, %d in its pause, %d between its resume and the old NVE's redirect (%s), %d after, %d at the end of the flow.\n",
				l.Flow, l.Lost, l.BeforeStop, l.InPause, l.ResumeToSwitch, at(v.OldNVERedirect), l.AfterSwitch, l.AtEnd)
		}
	}
	fmt.Fprintf(w, "Prepared by the libvirt hook in %v; first guest frame on the new tap %s (%v after resume); ilad committed %s, %v after that frame (by %s).\n\n",
		time.Duration(v.Prepare).Round(100*time.Microsecond), at(v.FirstFrame), time.Duration(v.FrameAfterResume).Round(10*time.Microsecond),
		at(v.Committed), time.Duration(v.CommitAfterFrame).Round(time.Microsecond), v.CommittedBy)
}

// VMFlowLoss sorts a flow's lost packets by their send time relative to
// the migration.
type VMFlowLoss struct {
	Flow string `json:"flow"`
	Lost int    `json:"lost"`
	// BeforeStop: sent while the guest still ran at the source (lost in
	// QEMU's queues when it stopped); InPause: while it was paused;
	// ResumeToSwitch: after its resume, before the old NVE redirected;
	// AfterSwitch: later (a problem); AtEnd: the flow's last packets,
	// after the last one that came back, when packets sent after the
	// switch did come back (their answers missed the flow's linger).
	BeforeStop     int `json:"before_stop"`
	InPause        int `json:"in_pause"`
	ResumeToSwitch int `json:"resume_to_redirect"`
	AfterSwitch    int `json:"after_redirect"`
	AtEnd          int `json:"at_end"`
}
