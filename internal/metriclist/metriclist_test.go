package metriclist

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNamesAndLint(t *testing.T) {
	page := []byte(`# HELP ila_x_total Things.
# TYPE ila_x_total counter
ila_x_total{a="1"} 3
# HELP ila_bad_count Things counted without the suffix.
# TYPE ila_bad_count counter
ila_bad_count 1
# HELP ila_lag_seconds Lag.
# TYPE ila_lag_seconds histogram
ila_lag_seconds_bucket{le="+Inf"} 0
ila_lag_seconds_sum 0
ila_lag_seconds_count 0
`)
	if diff := cmp.Diff([]string{"ila_bad_count", "ila_lag_seconds", "ila_x_total"}, Names(page)); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	probs, err := Lint(page)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`ila_bad_count: counter metrics should have "_total" suffix`, `ila_bad_count: non-histogram and non-summary metrics should not have "_count" suffix`}
	if diff := cmp.Diff(want, probs); diff != "" {
		t.Errorf("lint (-want +got):\n%s", diff)
	}
}
