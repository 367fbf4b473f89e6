//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Host failure and hot standby in the lab (docs/FAILOVER.md): `ilalab
// fail|recover` and `ilalab standby`.

// FailMapsrv names every mapsrv replica (the lab runs one, with its
// embedded etcd) for Fail and Recover, besides NVE names.
const FailMapsrv = "mapsrv"

// mapsrvTimerArgs are mapsrv's liveness flags.
func (l *Lab) mapsrvTimerArgs() []string {
	var args []string
	if hb := time.Duration(l.topo.Timers.Heartbeat); hb > 0 {
		args = append(args, "--heartbeat-interval", hb.String())
	}
	if n := l.topo.Timers.FlapMoves; n > 0 {
		args = append(args, "--flap-moves", strconv.Itoa(n))
	}
	return args
}

// iladTimerArgs are ilad's heartbeat and lifetime flags.
func (l *Lab) iladTimerArgs() []string {
	var args []string
	if hb := time.Duration(l.topo.Timers.Heartbeat); hb > 0 {
		args = append(args, "--heartbeat", hb.String())
	}
	if lt := time.Duration(l.topo.Timers.Lifetime); lt > 0 {
		args = append(args, "--lifetime", lt.String())
	}
	return args
}

// Fail makes a component of the lab die: an NVE (its ilad killed with
// SIGKILL, its underlay link down on both ends: the host is gone), mapsrv
// (killed), an ILA router (router, or router1.. with several: see
// failRouter). Failing what already failed is an error.
func (l *Lab) Fail(ctx context.Context, what string) error {
	switch what {
	case FailMapsrv:
		if !l.Running(procMapsrv) {
			return fmt.Errorf("fail mapsrv: not running (failed already?)")
		}
		l.progress("failing mapsrv (kill)")
		return l.Kill(procMapsrv)
	}
	if l.topo.isRouter(what) {
		return l.failRouter(what)
	}
	n, err := l.topo.NVEByName(what)
	if err != nil {
		return fmt.Errorf("fail %q: not an NVE, %s or a router: %w", what, FailMapsrv, err)
	}
	if n.Failed {
		return fmt.Errorf("fail %s: already failed (ilalab recover %s)", n.Name, n.Name)
	}
	l.progress("failing %s: kill ilad, underlay link down", n.Name)
	if err := l.Kill(procIlad(n.Name)); err != nil {
		return err
	}
	if err := l.nveLink(n, false); err != nil {
		return err
	}
	n.Failed = true
	return l.save()
}

// Recover brings back what Fail took down: an NVE's link and ilad (which
// finds its tasks in its state file and keeps only those still mapped to
// it) or mapsrv. Recovering what did not fail is an error.
func (l *Lab) Recover(ctx context.Context, what string) error {
	switch what {
	case FailMapsrv:
		if l.Running(procMapsrv) {
			return fmt.Errorf("recover mapsrv: it has not failed")
		}
		return l.StartMapsrv(ctx)
	}
	if l.topo.isRouter(what) {
		return l.recoverRouter(ctx, what)
	}
	n, err := l.topo.NVEByName(what)
	if err != nil {
		return fmt.Errorf("recover %q: not an NVE, %s or a router: %w", what, FailMapsrv, err)
	}
	if !n.Failed {
		return fmt.Errorf("recover %s: it has not failed", n.Name)
	}
	l.progress("recovering %s: underlay link up, ilad restarted", n.Name)
	if err := l.nveLink(n, true); err != nil {
		return err
	}
	if err := l.startIlad(ctx, n); err != nil {
		return err
	}
	n.Failed = false
	return l.save()
}

// nveLink sets an NVE's underlay link (up0 and its fabric end) up or down.
func (l *Lab) nveLink(n *NVE, up bool) error {
	fab, err := l.node(l.topo.FabricNetns)
	if err != nil {
		return err
	}
	nn, err := l.node(n.Netns)
	if err != nil {
		return err
	}
	if err := setLinkPair(nn, "up0", fab, n.Name, up); err != nil || !up {
		return err
	}
	// The kernel dropped the IPv6 addresses and routes of the links when
	// they went down: put back what buildUnderlay made.
	if err := fab.addr(n.Name, netip.PrefixFrom(fabricSide(n.Index), 64)); err != nil {
		return err
	}
	if err := nn.addr("up0", netip.PrefixFrom(n.Underlay, 64)); err != nil {
		return err
	}
	if err := fab.route(n.Locator.Prefix(), n.Underlay, n.Name); err != nil {
		return err
	}
	return nn.route(netip.MustParsePrefix("::/0"), fabricSide(n.Index), "up0")
}

// setLinkPair sets both ends of a link (a's end ai, b's end bi) up or
// down; up waits until both are operationally up.
func setLinkPair(a *node, ai string, b *node, bi string, up bool) error {
	for _, e := range []struct {
		nd  *node
		if_ string
	}{{a, ai}, {b, bi}} {
		if up {
			if err := e.nd.up(e.if_); err != nil {
				return err
			}
			continue
		}
		link, err := e.nd.link(e.if_)
		if err != nil {
			return err
		}
		if err := e.nd.h.LinkSetDown(link); err != nil {
			return fmt.Errorf("set %s down in %s: %w", e.if_, e.nd.name(), err)
		}
	}
	if !up {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return bothUp(ctx, a, ai, b, bi)
}

// Standby gives task a hot standby on NVE nve: a replica namespace with
// the task's addresses and MAC (a VM replica kept in sync by its
// hypervisor), linked to nve, whose ilad prepares the port and registers
// as the task's standby. When the task's NVE fails, mapsrv moves the task
// there.
func (l *Lab) Standby(ctx context.Context, taskName, nveName string) error {
	task, err := l.topo.TaskByName(taskName)
	if err != nil {
		return err
	}
	n, err := l.topo.NVEByName(nveName)
	if err != nil {
		return err
	}
	switch {
	case task.IPv4.IsValid():
		return fmt.Errorf("standby %s: IPv4 tenant tasks are not supported by the lab's standby", task.Name)
	case task.NVE == n.Name:
		return fmt.Errorf("standby %s on %s: that NVE hosts the task", task.Name, n.Name)
	case task.Standby != "":
		return fmt.Errorf("standby %s: it has one on %s already", task.Name, task.Standby)
	case n.Failed:
		return fmt.Errorf("standby %s on %s: that NVE has failed", task.Name, n.Name)
	}
	nn, err := l.node(n.Netns)
	if err != nil {
		return err
	}
	replica := *task
	replica.Netns = l.nsName(task.Name + "sb")
	l.progress("standby of %s on %s: replica namespace %s", task.Name, n.Name, replica.Netns)
	rn, err := newNode(replica.Netns)
	if err != nil {
		return err
	}
	l.nodes[replica.Netns] = rn
	task.Standby, task.StandbyNetns = n.Name, replica.Netns
	if err := l.save(); err != nil { // Down removes the namespace from now on
		return err
	}
	for _, kv := range taskSysctls {
		if err := rn.sysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	if err := nn.veth(task.Ifname, gatewayMAC(), rn, "eth0", mustMAC(task.MAC)); err != nil {
		return err
	}
	if err := rn.addr("eth0", netip.PrefixFrom(task.SIR, 64)); err != nil {
		return err
	}
	if err := bothUp(ctx, nn, task.Ifname, rn, "eth0"); err != nil {
		return err
	}
	if err := l.attachStandby(ctx, task, n.Name); err != nil {
		return err
	}
	if err := l.waitDefaultRoute(ctx, &replica, 10*time.Second); err != nil {
		return err
	}
	return l.save()
}

// FailoverResult is what a failover did, measured from the failure.
type FailoverResult struct {
	Task     string    `json:"task"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	FailedAt time.Time `json:"failed_at"`
	// Committed is mapsrv's commit of the task on its standby (the task
	// record's update time), Commit its delay after the failure (detection
	// and commit).
	Committed time.Time `json:"committed"`
	Commit    Duration  `json:"commit_after_failure"`
	MappedAt  time.Time `json:"seen_at"` // when the lab saw it mapped to To
	Version   int64     `json:"version"`
}

// WaitFailover waits until mapsrv maps task to its standby after its NVE
// failed at failedAt.
func (l *Lab) WaitFailover(ctx context.Context, taskName string, failedAt time.Time, timeout time.Duration) (*FailoverResult, error) {
	task, err := l.topo.TaskByName(taskName)
	if err != nil {
		return nil, err
	}
	if task.Standby == "" {
		return nil, fmt.Errorf("task %s has no standby", task.Name)
	}
	deadline := time.Now().Add(timeout)
	for {
		m, err := l.Mapped(ctx, task.Name)
		if err == nil && m.NVE == task.Standby && m.State == "active" {
			r := &FailoverResult{Task: task.Name, From: task.NVE, To: m.NVE, FailedAt: failedAt, Committed: m.Updated, MappedAt: time.Now(), Version: m.Version}
			r.Commit = Duration(m.Updated.Sub(failedAt))
			return r, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("still on " + m.NVE + " (" + m.State + ")")
			}
			return nil, fmt.Errorf("task %s not failed over to %s within %v: %w", task.Name, task.Standby, timeout, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// MapsrvMetric reads one unlabelled metric from mapsrv's /metrics.
func (l *Lab) MapsrvMetric(ctx context.Context, name string) (float64, error) {
	hc, err := l.ctlHTTP()
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.topo.Mapsrv.API+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("mapsrv metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, fmt.Errorf("mapsrv metrics: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("mapsrv metrics: no %s", name)
}
