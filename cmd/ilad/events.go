package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// appliedEvent is one line of an -events file: this node applied a task's
// mapping (or removed it) from the watch.
type appliedEvent struct {
	Time     time.Time   `json:"time"`
	Node     string      `json:"node"`
	Task     string      `json:"task"`
	SIR      string      `json:"sir"`
	Locator  ila.Locator `json:"locator"`
	NVE      string      `json:"nve"`
	Version  int64       `json:"version"`
	Revision int64       `json:"revision"`
	Deleted  bool        `json:"deleted,omitempty"`
}

// eventsFile opens path for appending and returns a func that records the
// task events the agent applied (for its OnEvent), and the file's close.
// An empty path records nothing.
func eventsFile(path, node string, log *slog.Logger) (record func(ila.Event), closeFn func() error, err error) {
	if path == "" {
		return func(ila.Event) {}, func() error { return nil }, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("events file: %w", err)
	}
	failed := false
	record = func(ev ila.Event) {
		if ev.Task == nil || (ev.Type != ila.EventTaskUpsert && ev.Type != ila.EventTaskDelete) {
			return
		}
		t := ev.Task
		b, err := json.Marshal(appliedEvent{
			Time: time.Now(), Node: node, Task: t.Name, SIR: t.SIR.String(), Locator: t.Locator, NVE: t.NVE,
			Version: t.Version, Revision: ev.Revision,
			Deleted: ev.Type == ila.EventTaskDelete || t.State == ila.StateSuspended || t.Locator == 0,
		})
		if err == nil {
			_, err = f.Write(append(b, '\n'))
		}
		if err != nil && !failed {
			failed = true // once: the file is a record, not the datapath
			log.Warn("events file: write failed; later failures are not logged", "path", path, "err", err)
		}
	}
	return record, f.Close, nil
}
