// Package dnsmetrics exposes a dnsbridge.Server's counters to Prometheus
// (the dnsbridge daemon and mapsrv's embedded bridge share it). It lives
// under cmd/ because it wires a product package (dnsbridge, which returns
// plain stats and imports no metrics library) to the daemons' registry:
// that is a main's job, not the ground floor's (internal/).
package dnsmetrics

import (
	"github.com/ilamesh/ilamesh/dnsbridge"
	"github.com/prometheus/client_golang/prometheus"
)

// New returns a collector that reads srv's counters at scrape time.
func New(srv *dnsbridge.Server) prometheus.Collector { return collector{srv} }

type collector struct{ srv *dnsbridge.Server }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	mQueries   = desc("ila_dns_queries_total", "Requests handed to the DNS handler.")
	mResponses = desc("ila_dns_responses_total", "Responses by rcode.", "rcode")
	mTruncated = desc("ila_dns_truncated_total", "UDP answers truncated to the client's size (TC set).")
	mLimited   = desc("ila_dns_rate_limited_total", "Queries dropped by the per-client rate limit.")
	mTransfers = desc("ila_dns_transfers_total", "AXFR and IXFR served.")
	mNotifies  = desc("ila_dns_notifies_total", "NOTIFY messages sent to secondaries, by result.", "result")
	mEvents    = desc("ila_dns_watch_events_total", "Mapping watch events applied.")
	mBadNames  = desc("ila_dns_bad_names_total", "Task or NVE records whose name is not a DNS label.")
	mSerial    = desc("ila_dns_serial", "SOA serial (store revision of the last change).")
	mSynced    = desc("ila_dns_synced", "1 once the whole store has been loaded.")
	mZones     = desc("ila_dns_zones", "Zones served.")
	mNames     = desc("ila_dns_names", "Owner names in the zones.")
)

func (c collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	n := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	g := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	s := c.srv.Stats()
	n(mQueries, s.Queries)
	n(mResponses, s.NoError, "NOERROR")
	n(mResponses, s.NXDomain, "NXDOMAIN")
	n(mResponses, s.Refused, "REFUSED")
	n(mResponses, s.ServFail, "SERVFAIL")
	n(mResponses, s.FormErr, "FORMERR")
	n(mResponses, s.NotImp, "NOTIMP")
	n(mTruncated, s.Truncated)
	n(mLimited, s.RateLimited)
	n(mTransfers, s.Transfers)
	n(mNotifies, s.Notifies, "acknowledged")
	n(mNotifies, s.NotifyFail, "failed")
	n(mEvents, s.Events)
	n(mBadNames, s.BadNames)
	g(mSerial, float64(s.Serial))
	synced := 0.0
	if s.Synced {
		synced = 1
	}
	g(mSynced, synced)
	g(mZones, float64(s.Zones))
	g(mNames, float64(s.Names))
}
