//go:build linux

package main

import (
	"github.com/ilamesh/ilamesh/ila/datapath"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/ndemu"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
	"github.com/prometheus/client_golang/prometheus"
)

// collector reads every component's counters at scrape time.
type collector struct {
	agent *locator.Agent
	dp    *datapath.Datapath
	emu   *ndemu.Emulator
	reg   *regproto.Client
	notif *regproto.Server
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	mMappings   = desc("ila_agent_mappings", "Mappings installed in the datapath.")
	mLocals     = desc("ila_agent_local_tasks", "Tasks attached to this NVE.")
	mInFlight   = desc("ila_agent_inflight_entries", "In-flight redirects of tasks that moved away.")
	mStore      = desc("ila_agent_store_tasks", "Tasks in the agent's copy of the store.")
	mSynced     = desc("ila_agent_watch_synced", "1 when the watch has listed the whole store.")
	mRevision   = desc("ila_agent_watch_revision", "Last store revision seen.")
	mApplied    = desc("ila_agent_applied_revision", "Store revision the datapath has applied (the last seen while the watch is synced, the last synced one during a relist).")
	mLag        = desc("ila_agent_watch_lag_seconds", "Time from the last task record's commit to its application.")
	mConverge   = desc("ila_agent_move_convergence_seconds", "Moves applied while synced: time from the task record's commit stamp (mapsrv's clock) to this node's datapath write.")
	mEvents     = desc("ila_agent_watch_events_total", "Watch events applied.")
	mSyncs      = desc("ila_agent_watch_syncs_total", "Complete (re)lists.")
	mWatchErr   = desc("ila_agent_watch_errors_total", "Watch sessions that ended in an error.")
	mMisses     = desc("ila_agent_misses_total", "Cache misses reported by the datapath, by outcome.", "outcome")
	mRegs       = desc("ila_agent_registrations_total", "Registrations sent to mapsrv, by result.", "result")
	mDeregs     = desc("ila_agent_deregistrations_total", "Deregistrations sent.")
	mMoves      = desc("ila_agent_moves_away_total", "Local tasks that moved to another NVE.")
	mEarly      = desc("ila_agent_early_redirects_total", "Handovers that redirected a stopped guest's packets to its destination before the move committed.")
	mSuspended  = desc("ila_agent_suspensions_total", "Local tasks whose delivery stopped for a cold or warm move.")
	mNotifs     = desc("ila_agent_notifications_total", "Move notifications from mapsrv.")
	mExpired    = desc("ila_agent_inflight_expired_total", "In-flight entries removed at their deadline.")
	mDpErr      = desc("ila_agent_datapath_errors_total", "Datapath table writes that failed.")
	mPulled     = desc("ila_agent_pulled_mappings", "Pull mode: mappings installed on cache misses (the working set).")
	mPullEvict  = desc("ila_agent_pull_evicted_total", "Pull mode: working set entries aged out (pull TTL) or evicted (pull max).")
	mPackets    = desc("ila_datapath_packets_total", "Datapath packet counters (summed over CPUs).", "counter")
	mFull       = desc("ila_datapath_full_errors_total", "Table writes refused because a table is full.")
	mND         = desc("ila_ndemu_messages_total", "ND emulator counters.", "counter")
	mNDPorts    = desc("ila_ndemu_ports", "Ports served by the ND emulator.")
	mRegClient  = desc("ila_regproto_client_messages_total", "Registration client counters (switches: moves to another mapsrv replica after the current one left tries unanswered).", "counter")
	mReplica    = desc("ila_ilad_mapsrv_replica_current", "mapsrv registration addresses (-mapsrv): 1 for the replica this NVE speaks to now, 0 for the others.", "address")
	mNotifyRecv = desc("ila_regproto_notify_messages_total", "Notification listener counters.", "counter")
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	n := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	s := c.agent.Stats()
	collectHeartbeat(c.agent.HeartbeatStats(), g, n)
	g(mMappings, float64(s.Mappings))
	g(mLocals, float64(s.Locals))
	g(mInFlight, float64(s.InFlight))
	g(mStore, float64(s.StoreTasks))
	synced := 0.0
	if s.Synced {
		synced = 1
	}
	g(mSynced, synced)
	g(mRevision, float64(s.Revision))
	g(mApplied, float64(s.Applied))
	g(mLag, s.LastLag.Seconds())
	h := c.agent.MoveConvergence()
	buckets := make(map[float64]uint64, len(h.Counts))
	for i, b := range locator.ConvergenceBuckets {
		buckets[b] = h.Counts[i]
	}
	ch <- prometheus.MustNewConstHistogram(mConverge, h.Count, h.Sum, buckets)
	n(mEvents, s.Events)
	n(mSyncs, s.Syncs)
	n(mWatchErr, s.WatchErrors)
	n(mMisses, s.MissLookups, "store_lookup")
	n(mMisses, s.MissDropped, "rate_limited")
	n(mMisses, s.MissErrors, "error")
	n(mMisses, s.Misses-min(s.Misses, s.MissLookups+s.MissDropped+s.MissErrors), "cache")
	n(mRegs, s.RegAccepted, "accepted")
	n(mRegs, s.RegRejected, "rejected")
	n(mRegs, s.RegErrors, "error")
	n(mDeregs, s.Deregistrations)
	n(mMoves, s.MovesAway)
	n(mEarly, s.EarlyRedirects)
	n(mSuspended, s.Suspended)
	n(mNotifs, s.Notifications)
	n(mExpired, s.InFlightExpired)
	n(mDpErr, s.DatapathErrors)
	g(mPulled, float64(s.Pulled))
	n(mPullEvict, s.PullEvicted)
	if st, err := c.dp.Stats(); err == nil {
		for name, v := range st.Counters {
			n(mPackets, v, name)
		}
		n(mFull, st.FullErrors)
	}
	if c.emu != nil {
		e := c.emu.Stats()
		g(mNDPorts, float64(e.Ports))
		for name, v := range map[string]uint64{
			"rs_received": e.RSReceived, "ns_received": e.NSReceived, "na_received": e.NAReceived,
			"na_sent": e.NASent, "ra_sent": e.RASent, "unknown_ignored": e.UnknownIgnored,
			"dad_defended": e.DADDefended, "spoofed_refused": e.SpoofedRefused, "claims": e.Claims,
			"invalid": e.Invalid, "send_errors": e.SendErrors,
		} {
			n(mND, v, name)
		}
	}
	if c.reg != nil {
		r := c.reg.Stats()
		n(mRegClient, r.Sent, "sent")
		n(mRegClient, r.Retries, "retries")
		n(mRegClient, r.Replies, "replies")
		n(mRegClient, r.Dropped, "dropped")
		n(mRegClient, r.Switches, "switches")
		cur := c.reg.Current()
		for _, a := range c.reg.Servers() {
			v := 0.0
			if a == cur {
				v = 1
			}
			g(mReplica, v, a.String())
		}
	}
	if c.notif != nil {
		r := c.notif.Stats()
		n(mNotifyRecv, r.Received, "received")
		n(mNotifyRecv, r.Accepted, "accepted")
		n(mNotifyRecv, r.RejectedTotal(), "rejected")
		n(mNotifyRecv, r.AuthFailures, "auth_failures")
		n(mNotifyRecv, r.Replays, "replays")
		n(mNotifyRecv, r.Malformed, "malformed")
	}
}
