package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/prometheus/client_golang/prometheus"
)

// livenessFlags defines the NVE liveness flags (docs/FAILOVER.md).
func livenessFlags(fs *flag.FlagSet, c *mapsrv.LivenessConfig) {
	host, _ := os.Hostname()
	if host == "" {
		host = "mapsrv"
	}
	fs.DurationVar(&c.Interval, "heartbeat-interval", time.Second, "heartbeat interval the NVEs use (ilad --heartbeat); negative: liveness and failover off")
	fs.IntVar(&c.SuspectAfter, "suspect-after", 2, "missed heartbeat intervals after which an NVE is suspect")
	fs.IntVar(&c.DeadAfter, "dead-after", 3, "missed heartbeat intervals after which an NVE is dead (its tasks fail over to their standby or are suspended)")
	fs.StringVar(&c.Replica, "replica-name", host, "name of this replica in the NVE liveness records (one per replica)")
	fs.Func("host-probe-port", "TCP port on a suspect NVE's underlay address to probe its host (a refused or accepted connection: the host runs, only its agent is silent, so it is not declared dead); 0: no probe (default 9)", func(v string) error {
		p, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return fmt.Errorf("want a port 0-65535: %w", err)
		}
		c.HostProbe = nil
		if p != 0 {
			c.HostProbe = tcpHostProbe(uint16(p))
		}
		return nil
	})
	c.HostProbe = tcpHostProbe(9)
}

// tcpHostProbe returns a host probe that opens a TCP connection to port
// on the underlay address: accepted or refused (RST), the host's kernel
// answered; a timeout or an unreachable error is no answer. It needs no
// privilege, unlike an ICMP echo.
func tcpHostProbe(port uint16) func(context.Context, netip.Addr) bool {
	return func(ctx context.Context, a netip.Addr) bool {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(a, port).String())
		if err == nil {
			c.Close()
			return true
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	}
}

// livenessMetrics exposes the liveness counters.
type livenessMetrics struct {
	svc                                                     *mapsrv.Service
	nves, heartbeats, fenced, changes, tasks, last, applied *prometheus.Desc
	hostAnswers, held                                       *prometheus.Desc
}

func newLivenessMetrics(svc *mapsrv.Service) *livenessMetrics {
	return &livenessMetrics{
		svc:         svc,
		nves:        prometheus.NewDesc("ila_mapsrv_nves", "NVEs this replica decides for, by liveness state.", []string{"state"}, nil),
		heartbeats:  prometheus.NewDesc("ila_mapsrv_heartbeats_total", "Heartbeats received.", nil, nil),
		fenced:      prometheus.NewDesc("ila_mapsrv_fenced_total", "Heartbeats refused under a stale epoch (the NVE was declared dead since).", nil, nil),
		changes:     prometheus.NewDesc("ila_mapsrv_nve_state_changes_total", "NVE liveness changes written, by new state (alive: a dead NVE rejoined).", []string{"state"}, nil),
		tasks:       prometheus.NewDesc("ila_mapsrv_failover_tasks_total", "Tasks of dead NVEs, by outcome (standby: moved to it; suspended: no usable standby), and standby registrations.", []string{"outcome"}, nil),
		last:        prometheus.NewDesc("ila_mapsrv_last_failover_seconds", "Last NVE death: detection (last heartbeat to decision) and commit (state and every task).", []string{"phase"}, nil),
		hostAnswers: prometheus.NewDesc("ila_mapsrv_host_probe_answers_total", "Probes of a suspect NVE's host (--host-probe-port) that it answered.", nil, nil),
		held:        prometheus.NewDesc("ila_mapsrv_deaths_held_total", "NVEs not declared dead although their heartbeats stopped, because their host still answered (an agent restart, not a host failure).", nil, nil),
		applied:     prometheus.NewDesc("ila_mapsrv_nve_applied_revision", "Store revision each NVE this replica hears has applied to its datapath, as its last heartbeat said.", []string{"nve"}, nil),
	}
}

func (m *livenessMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.nves, m.heartbeats, m.fenced, m.changes, m.tasks, m.last, m.applied, m.hostAnswers, m.held} {
		ch <- d
	}
}

func (m *livenessMetrics) Collect(ch chan<- prometheus.Metric) {
	st := m.svc.LivenessStats()
	c := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, labels...)
	}
	c(m.nves, prometheus.GaugeValue, float64(st.Alive), "alive")
	c(m.nves, prometheus.GaugeValue, float64(st.Suspect), "suspect")
	c(m.nves, prometheus.GaugeValue, float64(st.Dead), "dead")
	c(m.heartbeats, prometheus.CounterValue, float64(st.Heartbeats))
	c(m.fenced, prometheus.CounterValue, float64(st.Fenced))
	c(m.changes, prometheus.CounterValue, float64(st.Suspects), "suspect")
	c(m.changes, prometheus.CounterValue, float64(st.Deaths), "dead")
	c(m.changes, prometheus.CounterValue, float64(st.Revivals), "alive")
	c(m.tasks, prometheus.CounterValue, float64(st.Failovers), "standby")
	c(m.tasks, prometheus.CounterValue, float64(st.Suspensions), "suspended")
	c(m.tasks, prometheus.CounterValue, float64(st.Standbys), "standby_registered")
	c(m.last, prometheus.GaugeValue, st.LastDetection.Seconds(), "detection")
	c(m.last, prometheus.GaugeValue, st.LastCommit.Seconds(), "commit")
	c(m.hostAnswers, prometheus.CounterValue, float64(st.HostAnswers))
	c(m.held, prometheus.CounterValue, float64(st.DeathsHeld))
	for nve, a := range m.svc.AppliedRevisions() {
		c(m.applied, prometheus.GaugeValue, float64(a.Applied), nve)
	}
}
