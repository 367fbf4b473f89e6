package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serve runs a scripted QMP peer on a unix socket: the greeting, the
// capabilities handshake, then answer(command) for every command, the
// events before the first answer. (go-qemu's handshake reads ahead: an
// event sent right with the handshake's answer is lost, so a watcher asks
// query-status after connecting.)
func serve(t *testing.T, answer func(cmd string, args json.RawMessage) string, events ...string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintln(c, `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}`)
		r := bufio.NewScanner(c)
		for r.Scan() {
			var req struct {
				Execute   string          `json:"execute"`
				Arguments json.RawMessage `json:"arguments"`
			}
			if json.Unmarshal(r.Bytes(), &req) != nil {
				return
			}
			if req.Execute == "qmp_capabilities" {
				fmt.Fprintln(c, `{"return": {}}`)
				continue
			}
			for _, e := range events {
				fmt.Fprintln(c, e)
			}
			events = nil
			fmt.Fprintln(c, answer(req.Execute, req.Arguments))
		}
	}()
	return sock
}

func TestMonitor(t *testing.T) {
	var gotArgs string
	sock := serve(t, func(cmd string, args json.RawMessage) string {
		switch cmd {
		case "query-status":
			return `{"return": {"running": true, "singlestep": false, "status": "running"}}`
		case "announce-self":
			gotArgs = string(args)
			return `{"return": {}}`
		}
		return `{"error": {"class": "CommandNotFound", "desc": "The command ` + cmd + ` has not been found"}}`
	}, `{"timestamp": {"seconds": 1765000000, "microseconds": 250000}, "event": "RESUME"}`)
	evs := make(chan Event, 1)
	m, err := Dial(t.Context(), sock, func(e Event) { evs <- e })
	if err != nil {
		t.Fatal(err)
	}
	st, err := m.Status(t.Context())
	if err != nil || !st.Running || st.Status != "running" {
		t.Errorf("Status = %+v, %v", st, err)
	}
	select {
	case e := <-evs:
		if e.Name != "RESUME" || !e.Time.Equal(time.Unix(1765000000, 250000000)) {
			t.Errorf("event %+v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no RESUME event")
	}
	if err := m.AnnounceSelf(t.Context()); err != nil || !strings.Contains(gotArgs, `"rounds":3`) {
		t.Errorf("AnnounceSelf: %v (arguments %s)", err, gotArgs)
	}
	if err := m.Run(t.Context(), "no-such-command", nil, nil); err == nil || !strings.Contains(err.Error(), "has not been found") {
		t.Errorf("unknown command: %v", err)
	}
	m.Close()
	if err := m.Run(t.Context(), "query-status", nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
	select {
	case <-m.Done():
	case <-time.After(5 * time.Second):
		t.Error("Done not closed after Close")
	}
}

func TestDialNoSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := Dial(ctx, filepath.Join(t.TempDir(), "gone.sock"), nil); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial of a missing socket: %v, want a deadline error", err)
	}
}
