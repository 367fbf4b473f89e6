package grafana

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/ilamesh/ilamesh/internal/metriclist"
)

// exported is the union of the daemons' metric lists.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	files, _ := filepath.Glob("metrics/*.txt")
	if len(files) != 3 {
		t.Fatalf("metric lists %v: want ilad, mapsrv and dnsbridge", files)
	}
	out := map[string]bool{}
	for _, f := range files {
		names, err := metriclist.ReadList(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			out[n] = true
		}
	}
	return out
}

var (
	reString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	reMatchers = regexp.MustCompile(`\{[^}]*\}`)
	reRange    = regexp.MustCompile(`\[[^\]]*\]`)
	reGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	reIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	keywords   = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true, "inf": true, "nan": true}
)

// metricNames returns the metric names a PromQL expression selects.
// Dashboard variables ($instance) are in label matchers only.
func metricNames(expr string) []string {
	e := reString.ReplaceAllString(expr, `""`)
	e = reMatchers.ReplaceAllString(e, " ")
	e = reRange.ReplaceAllString(e, " ")
	e = reGrouping.ReplaceAllString(e, " ")
	var out []string
	for _, loc := range reIdent.FindAllStringIndex(e, -1) {
		id := e[loc[0]:loc[1]]
		rest := strings.TrimLeft(e[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || keywords[strings.ToLower(id)] {
			continue // a function or an aggregation
		}
		if loc[0] > 0 && (e[loc[0]-1] >= '0' && e[loc[0]-1] <= '9' || e[loc[0]-1] == '.') {
			continue // a number's exponent or unit (1e3, 5m)
		}
		out = append(out, id)
	}
	return out
}

// known reports whether name is exported, as such or as a histogram's
// series.
func known(have map[string]bool, name string) bool {
	if have[name] {
		return true
	}
	for _, sfx := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, sfx); ok && have[b] {
			return true
		}
	}
	return false
}

// checkExpr returns what is wrong with one expression.
func checkExpr(have map[string]bool, expr string) []string {
	names := metricNames(expr)
	if len(names) == 0 {
		return []string{fmt.Sprintf("%q names no metric", expr)}
	}
	var errs []string
	for _, n := range names {
		if !known(have, n) {
			errs = append(errs, fmt.Sprintf("%q: %s is not a metric any daemon exports", expr, n))
		}
	}
	return errs
}

// exprs walks a dashboard for PromQL: every target's "expr", and the
// queries of the template variables.
func exprs(v any, path string, fn func(path, expr string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			p := path + "." + k
			switch s, ok := c.(string); {
			case ok && k == "expr":
				fn(p, s)
			case ok && k == "definition":
				if m := regexp.MustCompile(`^label_values\(([^,]+),`).FindStringSubmatch(s); m != nil {
					fn(p, m[1])
				}
			default:
				exprs(c, p, fn)
			}
		}
	case []any:
		for i, c := range x {
			exprs(c, fmt.Sprintf("%s[%d]", path, i), fn)
		}
	}
}

func TestDashboardsNameExportedMetrics(t *testing.T) {
	have := exported(t)
	files, _ := filepath.Glob("dashboards/*.json")
	if len(files) == 0 {
		t.Fatal("no dashboards")
	}
	uids := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		uid, _ := d["uid"].(string)
		if uid == "" || d["title"] == nil {
			t.Errorf("%s: no uid or title", f)
		}
		if o, dup := uids[uid]; dup {
			t.Errorf("%s: uid %q is %s's too", f, uid, o)
		}
		uids[uid] = f
		n := 0
		exprs(d, f, func(path, expr string) {
			n++
			for _, e := range checkExpr(have, expr) {
				t.Errorf("%s: %s", path, e)
			}
		})
		if n == 0 {
			t.Errorf("%s: no expressions", f)
		}
		ids := map[float64]bool{}
		panels, _ := d["panels"].([]any)
		for _, p := range panels {
			pm, _ := p.(map[string]any)
			id, _ := pm["id"].(json.Number)
			v, err := id.Float64()
			if err != nil || ids[v] {
				t.Errorf("%s: panel %v: missing or repeated id", f, pm["title"])
			}
			ids[v] = true
		}
	}
}

// TestExprCheckCatches: the check refuses what it must (it cannot pass by
// finding nothing).
func TestExprCheckCatches(t *testing.T) {
	have := map[string]bool{"ila_agent_mappings": true, "ila_lag_seconds": true, "ila_x_total": true}
	for expr, bad := range map[string]bool{
		`ila_agent_mappings{instance=~"$instance"}`:                                          false,
		`histogram_quantile(0.99, sum by (le, instance) (rate(ila_lag_seconds_bucket[5m])))`: false,
		`max(ila_agent_mappings) - ila_agent_mappings`:                                       false,
		`sum by (counter) (rate(ila_x_total{counter=~"drop_.*"}[1m])) * 1e3`:                 false,
		`rate(ila_x_totl[5m])`:                            true, // a typo
		`ila_agent_mappings / up`:                         true, // Prometheus's own series: not ours
		`rate(ila_lag_seconds_max[5m])`:                   true, // not a histogram series
		`sum(rate(nothing_at_all[5m]))`:                   true,
		`vector(1)`:                                       true, // names no metric
		`ila_agent_mappings offset 5m`:                    false,
		`ila_agent_mappings and on(instance) ila_x_total`: false,
	} {
		errs := checkExpr(have, expr)
		if (len(errs) > 0) != bad {
			t.Errorf("%s: %q, want bad %v", expr, errs, bad)
		}
	}
}

func TestProvisioning(t *testing.T) {
	var dash struct {
		APIVersion int `json:"apiVersion"`
		Providers  []struct {
			Name, Type string
			Options    struct {
				Path string `json:"path"`
			} `json:"options"`
		} `json:"providers"`
	}
	var ds struct {
		APIVersion  int `json:"apiVersion"`
		Datasources []struct {
			Name, Type, URL string
		} `json:"datasources"`
	}
	for f, v := range map[string]any{"provisioning/dashboards/ilamesh.yaml": &dash, "provisioning/datasources/prometheus.yaml": &ds} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, v); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if dash.APIVersion != 1 || len(dash.Providers) != 1 || dash.Providers[0].Type != "file" || dash.Providers[0].Options.Path == "" {
		t.Errorf("dashboard provider: %+v", dash)
	}
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" {
		t.Errorf("data source: %+v", ds)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil || !slices.ContainsFunc(strings.Split(string(readme), "\n"), func(l string) bool { return strings.Contains(l, dash.Providers[0].Options.Path) }) {
		t.Errorf("README.md does not say where to mount the dashboards (%s): %v", dash.Providers[0].Options.Path, err)
	}
}
