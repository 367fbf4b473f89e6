//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/mapsrv/apiclient"
)

// The "no split brain" target of docs/FAILOVER.md: fail/recover cycles of
// a task with a hot standby, the two NVEs taking turns. `ilalab demo
// --scenario failover --cycles N`.

// CyclesReport is what RunFailoverCycles measured.
type CyclesReport struct {
	Started time.Time `json:"started"`
	Lab     string    `json:"lab"`
	Timers  Timers    `json:"timers"`
	Task    string    `json:"task"`
	NVEs    [2]string `json:"nves"`
	Asked   int       `json:"cycles_asked"`
	Done    int       `json:"cycles_done"`
	Took    Duration  `json:"took"`
	// Samples counts the observations of the store (every task record)
	// and of every live NVE's ilad (its tasks), taken every SampleEvery
	// through each cycle.
	Samples     int      `json:"samples"`
	SampleEvery Duration `json:"sample_every"`
	// SplitBrain counts samples in which the store had more than one
	// record for the task's identifier, or more than one NVE's ilad held
	// the task as its own (active, not a standby, registered).
	SplitBrain int `json:"split_brain"`
	// StealBacks counts cycles in which, after the failover, the store
	// mapped the task back to the NVE that failed and recovered, or its
	// version moved more than the failover's one step.
	StealBacks int `json:"steal_backs"`
	// Commit is, per cycle, the time from the failure to mapsrv's commit
	// of the task on the standby.
	Commit   []Duration `json:"commit_after_failure"`
	Problems []string   `json:"problems,omitempty"`
	Verdict  string     `json:"verdict"`
}

// cycler holds the clients a run of cycles reuses (a client per call
// would leave a connection per call open at mapsrv, which caps them).
type cycler struct {
	*Lab
	api   *apiclient.Client
	mu    sync.Mutex
	ilads map[string]*locator.Client
	// inject is CyclesConfig.Inject.
	inject func(ctx context.Context, recovered string) error
}

// ilad returns the client of nve's ilad API.
func (l *cycler) ilad(nve string) (*locator.Client, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.ilads[nve]; ok {
		return c, nil
	}
	c, err := locator.NewClient(l.iladSock(nve))
	if err != nil {
		return nil, err
	}
	l.ilads[nve] = c
	return c, nil
}

// mapped is Lab.Mapped over the cycler's client.
func (l *cycler) mapped(ctx context.Context, task *Task) (MappedTask, error) {
	rec, err := l.api.Task(ctx, task.Tenant, task.Name)
	if err != nil {
		return MappedTask{}, fmt.Errorf("get task %s: %w", task.Name, err)
	}
	return MappedTask{Name: rec.Name, Tenant: rec.Tenant, NVE: rec.NVE, Locator: rec.Locator.String(),
		State: string(rec.State), Version: int64(rec.Version), Updated: rec.Updated}, nil
}

// cycleSide is one of the two places the task lives in turn: an NVE and
// the namespace attached to it (the task's own, or its replica).
type cycleSide struct {
	nve, netns string
}

// CyclesConfig says how RunFailoverCycles runs.
type CyclesConfig struct {
	// Cycles is the number of fail/recover cycles (at least 1).
	Cycles int
	// Settle is how long each cycle watches the mapping after the failed
	// NVE recovered and let the task go [1s].
	Settle time.Duration
	// Inject, if set, runs in each cycle once the recovered NVE has let
	// the task go, before the settle watch: a fault the checks must catch
	// (a test's move back to the recovered NVE).
	Inject func(ctx context.Context, recovered string) error
}

// RunFailoverCycles gives the last IPv6 task a hot standby on the second
// task's NVE and runs n cycles: the NVE holding the task fails, mapsrv
// moves the task to the standby, the failed NVE recovers (and must let the
// task go), then becomes the task's standby for the next cycle, which
// fails the other NVE. Throughout, the store and the NVEs are sampled for
// a split brain and a steal-back. It stops at the first cycle that does
// not fail over (the report says so).
func (base *Lab) RunFailoverCycles(ctx context.Context, cfg CyclesConfig) (*CyclesReport, error) {
	n, settle := cfg.Cycles, cfg.Settle
	if settle == 0 {
		settle = time.Second
	}
	if n < 1 {
		return nil, fmt.Errorf("failover cycles: %d: want at least 1", n)
	}
	api, err := base.api()
	if err != nil {
		return nil, err
	}
	l := &cycler{Lab: base, api: api, ilads: map[string]*locator.Client{}, inject: cfg.Inject}
	var v6 []*Task
	for i := range l.topo.Tasks {
		if !l.topo.Tasks[i].IPv4.IsValid() && l.topo.Tasks[i].VM == nil {
			v6 = append(v6, &l.topo.Tasks[i])
		}
	}
	if len(v6) < 2 || len(l.topo.NVEs) < 2 {
		return nil, fmt.Errorf("failover cycles: needs 2 IPv6 tasks on 2 NVEs, lab has %d tasks, %d NVEs", len(v6), len(l.topo.NVEs))
	}
	dst := v6[len(v6)-1]
	if dst.Standby == "" {
		if err := l.Standby(ctx, dst.Name, v6[0].NVE); err != nil {
			return nil, err
		}
	}
	sides := [2]cycleSide{{dst.NVE, dst.Netns}, {dst.Standby, dst.StandbyNetns}}
	rep := &CyclesReport{Started: time.Now(), Lab: l.cfg.Name, Timers: l.topo.Timers, Task: dst.Name,
		NVEs: [2]string{sides[0].nve, sides[1].nve}, Asked: n, SampleEvery: Duration(50 * time.Millisecond)}
	defer func() { rep.Took = Duration(time.Since(rep.Started)) }()
	m, err := l.mapped(ctx, dst)
	if err != nil {
		return rep, err
	}
	if m.NVE != sides[0].nve {
		return rep, fmt.Errorf("failover cycles: %s is on %s, want %s", dst.Name, m.NVE, sides[0].nve)
	}
	if err := l.waitStandby(ctx, dst, sides[1].nve, 10*time.Second); err != nil {
		return rep, err
	}
	cur := 0
	for c := 1; c <= n; c++ {
		from, to := sides[cur], sides[1-cur]
		l.progress("cycle %d/%d: %s fails, %s on %s takes over", c, n, from.nve, dst.Name, to.nve)
		before, err := l.mapped(ctx, dst)
		if err != nil {
			return rep, err
		}
		smp := l.sampleSplitBrain(ctx, dst, time.Duration(rep.SampleEvery))
		err = l.failoverCycle(ctx, rep, dst, from, to, before.Version, settle)
		s := smp.stop()
		rep.Samples += s.samples
		rep.SplitBrain += s.split
		rep.Problems = append(rep.Problems, s.notes...)
		if err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("cycle %d: %v", c, err))
			break
		}
		rep.Done = c
		cur = 1 - cur
	}
	if rep.SplitBrain > 0 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d samples saw a split brain", rep.SplitBrain))
	}
	if rep.StealBacks > 0 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d cycles saw a steal-back", rep.StealBacks))
	}
	if len(rep.Problems) == 0 {
		rep.Verdict = fmt.Sprintf("PASS: %d fail/recover cycles, no split brain in %d samples, no steal-back", rep.Done, rep.Samples)
	} else {
		rep.Verdict = "FAIL: " + strings.Join(rep.Problems, "; ")
	}
	return rep, nil
}

// failoverCycle fails from, waits for the task on to, recovers from,
// watches settle for a steal-back and makes from the standby again.
func (l *cycler) failoverCycle(ctx context.Context, rep *CyclesReport, dst *Task, from, to cycleSide, version int64, settle time.Duration) error {
	failedAt := time.Now()
	if err := l.Fail(ctx, from.nve); err != nil {
		return err
	}
	m, err := l.waitMapped(ctx, dst, to.nve, 10*time.Second)
	if err != nil {
		return err
	}
	rep.Commit = append(rep.Commit, Duration(m.Updated.Sub(failedAt)))
	if m.Version != version+1 {
		rep.StealBacks++
		return fmt.Errorf("failover to %s: version %d, want %d", to.nve, m.Version, version+1)
	}
	if err := l.Recover(ctx, from.nve); err != nil {
		return err
	}
	// The recovered NVE lets the task go and must not take it back.
	if err := l.waitReleased(ctx, dst, from.nve, 10*time.Second); err != nil {
		return err
	}
	if l.inject != nil {
		if err := l.inject(ctx, from.nve); err != nil {
			return fmt.Errorf("inject: %w", err)
		}
	}
	deadline := time.Now().Add(settle)
	for time.Now().Before(deadline) {
		m, err := l.mapped(ctx, dst)
		if err != nil {
			return err
		}
		if m.NVE != to.nve || m.Version != version+1 {
			rep.StealBacks++
			return fmt.Errorf("after %s recovered: %s on %s version %d, want %s version %d", from.nve, dst.Name, m.NVE, m.Version, to.nve, version+1)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The recovered NVE holds the standby for the next cycle: the
	// namespace that stayed on its port (a replica kept in sync).
	if err := l.attachStandby(ctx, dst, from.nve, 10*time.Second); err != nil {
		return err
	}
	return l.waitStandby(ctx, dst, from.nve, 10*time.Second)
}

// attachStandby attaches task as a standby on nve's ilad until the ilad
// lists it so. A restarted ilad restores the task from its state file
// (as its own) and detaches it once its watch shows the task elsewhere;
// an attach before that waits for it (a 503 when the ilad's 5 s run out:
// made again). An older ilad took such an attach as a no-op: the listing
// is what is checked.
func (l *cycler) attachStandby(ctx context.Context, task *Task, nve string, timeout time.Duration) error {
	spec := task.spec()
	spec.Standby = true
	c, err := l.ilad(nve)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		actx, cancel := context.WithTimeout(ctx, timeout)
		_, err := c.Attach(actx, spec)
		cancel()
		var apiErr *locator.APIError
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusServiceUnavailable && time.Now().Before(deadline) {
			continue // the restored copy not settled yet
		}
		if err != nil {
			return fmt.Errorf("standby of %s on %s: %w", task.Name, nve, err)
		}
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		ts, err := c.Tasks(lctx)
		cancel()
		if err == nil && slices.ContainsFunc(ts, func(s locator.TaskStatus) bool { return s.SIR == task.SIR && s.Standby }) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("standby of %s on %s: the ilad does not list it as a standby after %v (%v)", task.Name, nve, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitMapped waits until mapsrv maps task, active, to nve.
func (l *cycler) waitMapped(ctx context.Context, task *Task, nve string, timeout time.Duration) (MappedTask, error) {
	deadline := time.Now().Add(timeout)
	for {
		m, err := l.mapped(ctx, task)
		if err == nil && m.NVE == nve && m.State == "active" {
			return m, nil
		}
		if time.Now().After(deadline) {
			return m, fmt.Errorf("%s not mapped to %s within %v (on %s, %s, %v)", task.Name, nve, timeout, m.NVE, m.State, err)
		}
		select {
		case <-ctx.Done():
			return m, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitStandby waits until mapsrv records nve as task's standby.
func (l *cycler) waitStandby(ctx context.Context, task *Task, nve string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		rec, err := l.api.Task(ctx, task.Tenant, task.Name)
		if err == nil && rec.Standby != nil && rec.Standby.NVE == nve {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: standby on %s not recorded within %v (%v)", task.Name, nve, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitReleased waits until nve's ilad no longer holds task as its own,
// registered or not: a restarted ilad restores the task from its state
// file and detaches it only once its watch shows the task elsewhere, and
// a standby attach of the same task before that is a no-op (the ports
// are the same), so no standby would be registered.
func (l *cycler) waitReleased(ctx context.Context, task *Task, nve string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		owns, err := l.iladHolds(ctx, nve, task, false)
		if err == nil && !owns {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still holds %s %v after it recovered (%v)", nve, task.Name, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// iladOwns says whether nve's ilad holds task as its own: attached,
// active, not a standby, registered.
func (l *cycler) iladOwns(ctx context.Context, nve string, task *Task) (bool, error) {
	return l.iladHolds(ctx, nve, task, true)
}

// iladHolds says whether nve's ilad has task attached, active, not a
// standby; registered too if registered is set.
func (l *cycler) iladHolds(ctx context.Context, nve string, task *Task, registered bool) (bool, error) {
	c, err := l.ilad(nve)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	ts, err := c.Tasks(ctx)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(ts, func(s locator.TaskStatus) bool {
		return s.SIR == task.SIR && !s.Standby && s.State == locator.StateActive && (s.Registered || !registered)
	}), nil
}

// splitSampler samples the store and the NVEs until stopped.
type splitSampler struct {
	cancel context.CancelFunc
	done   chan struct{}
	res    splitSamples
}

type splitSamples struct {
	samples, split int
	notes          []string
}

func (s *splitSampler) stop() splitSamples {
	s.cancel()
	<-s.done
	return s.res
}

// sampleSplitBrain samples, every interval, every task record of the
// store and the tasks of every live NVE's ilad: a sample is a split brain
// when the store has two records for task's identifier or two NVEs hold
// it as their own.
func (l *cycler) sampleSplitBrain(ctx context.Context, task *Task, every time.Duration) *splitSampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &splitSampler{cancel: cancel, done: make(chan struct{})}
	// What the sampler reads of the lab, taken here: the cycle changes
	// the topology (an NVE's state) meanwhile.
	var nves []string
	for _, nv := range l.topo.NVEs {
		nves = append(nves, nv.Name)
	}
	c, err := l.Lab.api() // its own connection
	if err != nil {
		s.res.notes = append(s.res.notes, "sampler: "+err.Error())
		close(s.done)
		return s
	}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			recs, err := c.Tasks(ctx)
			if err == nil {
				var on []string
				for _, r := range recs {
					if r.Identifier == task.Identifier {
						on = append(on, r.NVE)
					}
				}
				var mu sync.Mutex
				var owners []string
				var wg sync.WaitGroup
				for _, nv := range nves {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if owns, err := l.iladOwns(ctx, nv, task); err == nil && owns {
							mu.Lock()
							owners = append(owners, nv)
							mu.Unlock()
						}
					}()
				}
				wg.Wait()
				s.res.samples++
				if len(on) > 1 || len(owners) > 1 {
					s.res.split++
					if len(s.res.notes) < 10 {
						slices.Sort(owners)
						s.res.notes = append(s.res.notes, fmt.Sprintf("%s: store records on %v, held by %v", time.Now().UTC().Format(time.RFC3339Nano), on, owners))
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// Text writes the cycles report in plain words.
func (r *CyclesReport) Text(w io.Writer) {
	fmt.Fprintf(w, "ILA lab failover cycles, %s (heartbeat %v)\n\n", r.Started.UTC().Format(time.RFC3339), time.Duration(r.Timers.Heartbeat))
	fmt.Fprintf(w, "%s between %s and %s: %d of %d fail/recover cycles in %v\n", r.Task, r.NVEs[0], r.NVEs[1], r.Done, r.Asked, time.Duration(r.Took).Round(time.Millisecond))
	fmt.Fprintf(w, "samples of the store and every NVE (every %v): %d; split brain in %d; steal-backs %d\n",
		time.Duration(r.SampleEvery), r.Samples, r.SplitBrain, r.StealBacks)
	if len(r.Commit) > 0 {
		ds := make([]time.Duration, len(r.Commit))
		for i, d := range r.Commit {
			ds[i] = time.Duration(d)
		}
		slices.Sort(ds)
		fmt.Fprintf(w, "failure to commit on the standby: min %v, median %v, max %v\n",
			ds[0].Round(time.Millisecond), ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	}
	fmt.Fprintf(w, "\n%s\n", r.Verdict)
}

// WriteReport writes a report as indented JSON to path (its directory
// made if needed).
func WriteReport(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return writeJSON(path, v)
}
