//go:build linux

package test

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/deploy/lab"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/mapsrv"
)

// taskLinks lists the task's own interfaces (eth0, eth1).
func taskLinks(t *testing.T, tk *lab.Task) []string {
	t.Helper()
	out, err := exec.Command("ip", "-n", tk.Netns, "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("links of %s: %v\n%s", tk.Name, err, out)
	}
	var links []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], "eth") {
			links = append(links, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	return links
}

// iladTask is the task as the ilad of nve reports it (ok false: unknown
// there).
func iladTask(t *testing.T, l *lab.Lab, nve, name string) (locator.TaskStatus, bool) {
	t.Helper()
	c, err := locator.NewClient(filepath.Join(l.StateDir(), "ilad-"+nve+".sock"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	st, err := c.Task(ctx, name)
	return st, err == nil
}

// ilactl runs the lab's ilactl against its mapsrv (in the control
// namespace, with its CA and token).
func ilactl(t *testing.T, l *lab.Lab, arg ...string) ([]byte, error) {
	t.Helper()
	topo := l.Topology()
	args := []string{"netns", "exec", topo.Mapsrv.Netns, filepath.Join(binDir, "ilactl"), "--api", topo.Mapsrv.API}
	if topo.Mapsrv.CAFile != "" {
		args = append(args, "--ca-file", topo.Mapsrv.CAFile)
	}
	if topo.Mapsrv.TokenFile != "" {
		args = append(args, "--token-file", topo.Mapsrv.TokenFile)
	}
	return exec.Command("ip", append(args, arg...)...).CombinedOutput()
}

// whereOK runs ilactl where for the task: every NVE's and the ILA
// router's datapath must equal the store (within 3 s).
func whereOK(t *testing.T, l *lab.Lab, name string) {
	t.Helper()
	out, err := ilactl(t, l, "where", name, "--wait", "3s",
		"--ilad-socket", filepath.Join(l.StateDir(), "ilad-{nve}.sock"),
		"--router", "router="+filepath.Join(l.StateDir(), "ilad-router.sock"))
	if err != nil {
		t.Errorf("ilactl where %s: %v\n%s", name, err, out)
	}
}

// checkUnmoved checks that task name is where it was, on nve, and nothing
// of a move is left: the store, the lab, the task's links, the other
// NVE's ilad (no claim left to retry), every datapath, traffic.
func checkUnmoved(t *testing.T, l *lab.Lab, name, nve, other string) {
	t.Helper()
	m, err := l.Mapped(t.Context(), name)
	if err != nil || m.NVE != nve || m.State != "active" {
		t.Errorf("%s in mapsrv: %+v, %v; want active on %s", name, m, err, nve)
	}
	tk := task(t, l, name)
	if tk.NVE != nve {
		t.Errorf("%s in the lab's topology: on %s, want %s", name, tk.NVE, nve)
	}
	if got := taskLinks(t, tk); len(got) != 1 {
		t.Errorf("%s's links: %v, want one", name, got)
	}
	if st, ok := iladTask(t, l, other, name); ok && st.State != locator.StateMoved {
		t.Errorf("%s at %s's ilad: %s (registered %v, error %q); want it gone", name, other, st.State, st.Registered, st.Error)
	}
	// No standby role is left at the other NVE (a failover would move
	// the task to a port that is gone). The aborting NVE withdraws it
	// once mapsrv answers again (retrying at most 1 s apart): give that
	// a bounded time on a loaded machine.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var rec mapsrv.TaskRecord
		out, err := ilactl(t, l, "task", "get", name, "--tenant", tk.Tenant, "-o", "json")
		if err != nil || json.Unmarshal(out, &rec) != nil {
			t.Errorf("ilactl task get %s: %v\n%s", name, err, out)
			break
		}
		if rec.Standby == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%s keeps a standby 10 s after the failed or refused move: %+v", name, *rec.Standby)
			break
		}
	}
	whereOK(t, l, name)
	if tk.IPv4.IsValid() {
		pingAll(t, l, "t4", tk.IPv4, 20) // t4: the IPv4 tenant's task on nve1
		return
	}
	pingAll(t, l, "t1", tk.SIR, 20)
}

// TestMoveRefusals: a move that fails leaves nothing behind and does not
// happen later (issue 18, weakness 4); a move that flap damping refuses is
// refused before anything changes (weakness 5).
func TestMoveRefusals(t *testing.T) {
	l := upLab(t, lab.Config{IPv4Tenant: true})
	t2 := task(t, l, "t2")
	reach(t, l, "t1", t2.SIR)

	t.Run("mapsrv down", func(t *testing.T) {
		// Down before the move: mapsrv's check fails, nothing changes.
		if err := l.Fail(t.Context(), lab.FailMapsrv); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Move(t.Context(), "t2", "nve3", lab.MoveHot); err == nil {
			t.Errorf("move with mapsrv down: no error")
		} else {
			t.Logf("move with mapsrv down: %v", err)
		}
		if err := l.Recover(t.Context(), lab.FailMapsrv); err != nil {
			t.Fatal(err)
		}
		checkUnmoved(t, l, "t2", "nve2", "nve3")

		// Down between the check and the commit: the new link is up, nve3
		// holds t2 in standby, t2's routes use the new link; the commit
		// (nve3's claim) fails. The move is undone and nve3 stops
		// claiming: nothing commits once mapsrv is back.
		_, err := l.MoveDualHeld(t.Context(), "t2", "nve3", func() error { return l.Fail(t.Context(), lab.FailMapsrv) })
		if err == nil {
			t.Errorf("move with mapsrv failing before the commit: no error")
		} else {
			t.Logf("move with mapsrv failing before the commit: %v", err)
		}
		if err := l.Recover(t.Context(), lab.FailMapsrv); err != nil {
			t.Fatal(err)
		}
		// nve3's registration backoff is at most 5 s: a claim it kept
		// retrying would have landed by then.
		time.Sleep(5500 * time.Millisecond)
		checkUnmoved(t, l, "t2", "nve2", "nve3")
		// Nothing is left in the way of the same move now.
		if _, err := l.Move(t.Context(), "t2", "nve3", lab.MoveHot); err != nil {
			t.Fatalf("move once mapsrv is back: %v", err)
		}
		pingAll(t, l, "t1", t2.SIR, 20)
	})

	t.Run("flap damping", func(t *testing.T) {
		// mapsrv allows 5 moves of a task within 180 s (--flap-moves):
		// t3's 6th is refused.
		t3 := task(t, l, "t3")
		on, other := t3.NVE, "nve2"
		for i := range 5 {
			if _, err := l.Move(t.Context(), "t3", other, lab.MoveHot); err != nil {
				t.Fatalf("move %d of t3 to %s: %v", i+1, other, err)
			}
			on, other = other, on
		}
		pc := ping(t.Context(), l, "t1", t3.SIR, 1500*time.Millisecond)
		time.Sleep(200 * time.Millisecond)
		_, err := l.Move(t.Context(), "t3", other, lab.MoveHot)
		if err == nil || !strings.Contains(err.Error(), "flap") {
			t.Errorf("6th move within the flap window: %v, want a refusal by flap damping", err)
		}
		f := <-pc
		logFlow(t, f)
		if f.Lost != 0 {
			t.Errorf("ping across the refused move: lost %d of %d", f.Lost, f.Sent)
		}
		checkUnmoved(t, l, "t3", on, other)
	})

	t.Run("ipv4 task, given up before the commit", func(t *testing.T) {
		// The IPv4 half of the undo: t5's subnet route and its MAC at
		// nve3's bridge have moved to the new link when the move gives
		// up; the route returns to the old link.
		t5 := task(t, l, "t5")
		reach(t, l, "t4", t5.IPv4)
		_, err := l.MoveDualHeld(t.Context(), "t5", "nve3", func() error { return errors.New("test: given up before the commit") })
		if err == nil || !strings.Contains(err.Error(), "given up") {
			t.Errorf("move given up before the commit: %v", err)
		}
		checkUnmoved(t, l, "t5", "nve2", "nve3")
		pingAll(t, l, "t6", t5.IPv4, 20)
	})
}
