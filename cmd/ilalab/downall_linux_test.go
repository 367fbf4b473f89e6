package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestDownAllFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"with --name", []string{"down", "--all", "--name", "x"}, "takes no --name"},
		{"with --state-dir", []string{"down", "--all", "--state-dir", "/tmp/x"}, "takes no --state-dir"},
		{"with both", []string{"down", "--all", "--name", "x", "--state-dir", "/tmp/x"}, "takes no --name or --state-dir"},
		{"with an argument", []string{"down", "--all", "lab1"}, `unexpected argument "lab1"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(context.Background(), tc.args, &out, &errb)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("run(%q) = %v, want an error containing %q", tc.args, err, tc.wantErr)
			}
			if out.Len() > 0 {
				t.Errorf("printed %q before refusing", out.String())
			}
		})
	}
}
