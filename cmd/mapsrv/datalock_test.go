package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunDataDirLocked: a second mapsrv on the data directory of a
// running one is refused at once with a clear error.
func TestRunDataDirLocked(t *testing.T) {
	dir, err := os.MkdirTemp("", "mapsrv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data := filepath.Join(dir, "data")
	api := freePort(t, "tcp")
	stop := start(t, api, "--data-dir", data, "--api-addr", api)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	logs := &syncBuf{}
	t0 := time.Now()
	err = run(ctx, []string{"--data-dir", data, "--api-addr", freePort(t, "tcp"), "--etcd-client-url", "unix://" + filepath.Join(dir, "second.sock")}, logs)
	if err == nil || !strings.Contains(err.Error(), "is in use by another mapsrv (pid ") || time.Since(t0) > 5*time.Second {
		t.Errorf("second mapsrv on the same data dir: %v after %v, want refused at once\n%s", err, time.Since(t0), logs)
	}
	// Once the first one stops, the directory is free again.
	stop()
	start(t, api, "--data-dir", data, "--api-addr", api)
}
