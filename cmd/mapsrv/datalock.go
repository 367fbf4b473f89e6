package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockDataDir takes an exclusive lock on dir/mapsrv.lock (flock: released
// when the process ends, however it ends) and writes the process id into
// it, so that a second mapsrv on the same data directory is refused at
// once instead of waiting on, or corrupting, the embedded etcd's files.
// Close the returned file to release the lock.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "mapsrv.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another mapsrv"
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b[:n]))); perr == nil {
				who = fmt.Sprintf("another mapsrv (pid %d)", pid)
			}
			return nil, fmt.Errorf("data dir %s is in use by %s: %s is locked", dir, who, path)
		}
		return nil, fmt.Errorf("data dir lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
