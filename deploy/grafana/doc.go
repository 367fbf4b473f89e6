// Package grafana holds no code: its directory holds the Grafana
// dashboards of ilamesh (dashboards/*.json) with their provisioning files
// (provisioning/), and the lists of the metrics each daemon exports
// (metrics/*.txt, kept equal to what the daemons serve by their tests:
// internal/metriclist). Its test checks that every expression of every
// dashboard names only listed metrics.
package grafana
