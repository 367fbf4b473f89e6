// Package metriclist checks what a daemon exports to Prometheus, for the
// daemons' tests: its metric names pass client_golang's promlint, and are
// exactly the names deploy/grafana/metrics/<daemon>.txt lists, the list
// deploy/grafana's test checks every dashboard expression against. A
// metric added to a daemon (or renamed) therefore fails its test until the
// list says so, and a dashboard can only name what a daemon exports.
//
// ILAMESH_UPDATE_METRICS=1 rewrites the list from what the test saw.
package metriclist

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// Names returns the metric family names of a Prometheus text page (its
// "# TYPE" lines).
func Names(page []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(page))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 4 && f[0] == "#" && f[1] == "TYPE" {
			out = append(out, f[2])
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Lint returns promlint's problems with page, one line each.
func Lint(page []byte) ([]string, error) {
	probs, err := promlint.New(bytes.NewReader(page)).Lint()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range probs {
		out = append(out, p.Metric+": "+p.Text)
	}
	return out, nil
}

// ListPath is the list of daemon's metrics, found from the test's working
// directory (anywhere in the module).
func ListPath(daemon string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "deploy", "grafana", "metrics", daemon+".txt"), nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = up
	}
}

// ReadList reads a metric list: one name a line, # comments.
func ReadList(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out, nil
}

// Check lints the pages a daemon served and compares their metric names
// (together) with its list.
func Check(t testing.TB, daemon string, pages ...[]byte) {
	t.Helper()
	var names []string
	for _, p := range pages {
		probs, err := Lint(p)
		if err != nil {
			t.Errorf("%s metrics: lint: %v", daemon, err)
		}
		for _, pr := range probs {
			t.Errorf("%s metrics: promlint: %s", daemon, pr)
		}
		names = append(names, Names(p)...)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	path, err := ListPath(daemon)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("ILAMESH_UPDATE_METRICS") == "1" {
		head := "# Metrics " + daemon + " exports, as its test saw them (internal/metriclist;\n# ILAMESH_UPDATE_METRICS=1 rewrites this file). deploy/grafana's dashboards\n# may name these only.\n"
		if err := os.WriteFile(path, []byte(head+strings.Join(names, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := ReadList(path)
	if err != nil {
		t.Fatalf("%s metrics list: %v (ILAMESH_UPDATE_METRICS=1 writes it)", daemon, err)
	}
	for _, n := range names {
		if !slices.Contains(want, n) {
			t.Errorf("%s exports %s, which %s does not list (ILAMESH_UPDATE_METRICS=1 rewrites the list)", daemon, n, path)
		}
	}
	for _, n := range want {
		if !slices.Contains(names, n) {
			t.Errorf("%s lists %s, which %s does not export (ILAMESH_UPDATE_METRICS=1 rewrites the list)", path, n, daemon)
		}
	}
}
