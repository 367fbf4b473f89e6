//go:build linux

package owner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ilamesh/ilamesh/internal/netns"
)

// DefaultDir is where records are kept unless a Registry names another
// directory.
const DefaultDir = "/run/ilamesh/owners"

// Kind is the kind of a recorded object.
type Kind string

const (
	// Netns is a named network namespace under /var/run/netns; the name
	// is the namespace's.
	Netns Kind = "netns"
	// BPFFS is a bpffs mounted on a directory (by a test); the name is the
	// mount point.
	BPFFS Kind = "bpffs"
	// Lab is an ilalab lab: the name is the lab's name (the prefix of its
	// namespaces), and the record carries its state directory.
	Lab Kind = "lab"
)

// Record says which process made an object.
type Record struct {
	Kind Kind   `json:"kind"`
	Name string `json:"name"`
	PID  int    `json:"pid"`
	// Start is the creator's start time (clock ticks after boot).
	Start uint64 `json:"start"`
	// StateDir is a lab's state directory.
	StateDir string `json:"state_dir,omitempty"`
}

// CreatorAlive reports whether the process that made the object runs.
func (r Record) CreatorAlive() bool { return Running(r.PID, r.Start) }

// Registry is a directory of records.
type Registry struct {
	// Dir [DefaultDir].
	Dir string
}

func (g Registry) dir() string {
	if g.Dir == "" {
		return DefaultDir
	}
	return g.Dir
}

func (g Registry) path(kind Kind, name string) string {
	return filepath.Join(g.dir(), string(kind)+"."+url.PathEscape(name))
}

func validate(kind Kind, name, stateDir string) error {
	if kind == Lab && !filepath.IsAbs(stateDir) {
		return fmt.Errorf("owner record of lab %q: state dir %q is not an absolute path", name, stateDir)
	}
	switch kind {
	case Netns, Lab:
		if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
			return fmt.Errorf("owner record of %s %q: invalid name", kind, name)
		}
	case BPFFS:
		if !filepath.IsAbs(name) {
			return fmt.Errorf("owner record of bpffs %q: want an absolute path", name)
		}
	default:
		return fmt.Errorf("owner record: unknown kind %q", kind)
	}
	return nil
}

// Claim records the calling process as the creator of an object it is
// about to make (stateDir only for a lab). An existing record of the same
// object is replaced.
func (g Registry) Claim(kind Kind, name, stateDir string) error {
	if err := validate(kind, name, stateDir); err != nil {
		return err
	}
	pid := os.Getpid()
	start, err := StartTime(pid)
	if err != nil {
		return err
	}
	b, err := json.Marshal(Record{Kind: kind, Name: name, PID: pid, Start: start, StateDir: stateDir})
	if err != nil {
		return fmt.Errorf("owner record of %s %s: %w", kind, name, err)
	}
	if err := os.MkdirAll(g.dir(), 0o755); err != nil {
		return fmt.Errorf("owner records: %w", err)
	}
	p := g.path(kind, name)
	tmp := filepath.Join(g.dir(), "."+filepath.Base(p)+"."+strconv.Itoa(pid))
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("owner record of %s %s: %w", kind, name, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("owner record of %s %s: %w", kind, name, err)
	}
	return nil
}

// Release removes an object's record (once the object is gone). A missing
// record is not an error.
func (g Registry) Release(kind Kind, name string) error {
	if err := os.Remove(g.path(kind, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("owner record of %s %s: %w", kind, name, err)
	}
	return nil
}

// Get returns an object's record.
func (g Registry) Get(kind Kind, name string) (Record, error) {
	return g.read(g.path(kind, name))
}

func (g Registry) read(p string) (Record, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return Record{}, fmt.Errorf("owner record: %w", err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("owner record %s: %w", p, err)
	}
	if err := validate(r.Kind, r.Name, r.StateDir); err != nil {
		return Record{}, fmt.Errorf("owner record %s: %w", p, err)
	}
	if p != g.path(r.Kind, r.Name) {
		return Record{}, fmt.Errorf("owner record %s: names %s %s", p, r.Kind, r.Name)
	}
	return r, nil
}

// List returns every record, sorted by kind and name. Files that are not
// records are reported in the error (and left alone); the records that
// could be read are returned with it.
func (g Registry) List() ([]Record, error) {
	ents, err := os.ReadDir(g.dir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("owner records: %w", err)
	}
	var out []Record
	var errs []error
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue // a record being written
		}
		r, err := g.read(filepath.Join(g.dir(), e.Name()))
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Record) int {
		return strings.Compare(string(a.Kind)+"\x00"+a.Name, string(b.Kind)+"\x00"+b.Name)
	})
	return out, errors.Join(errs...)
}

// Outcome is what Sweep did with a recorded object.
type Outcome int

const (
	// Kept: the creator runs.
	Kept Outcome = iota
	// Removed: the creator was gone and the object was removed.
	Removed
	// Forgotten: the creator and the object were both gone; only the
	// record was left, and is removed.
	Forgotten
)

// Swept is one record Sweep looked at.
type Swept struct {
	Record
	Outcome Outcome
}

// Sweep removes the objects of the given kinds (Netns, BPFFS) whose
// creator is gone, and their records. It returns every record of those
// kinds it looked at, with what it did; it goes on past errors and
// returns them joined.
func (g Registry) Sweep(kinds ...Kind) ([]Swept, error) {
	recs, err := g.List()
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	var out []Swept
	for _, r := range recs {
		if !slices.Contains(kinds, r.Kind) {
			continue
		}
		if r.CreatorAlive() {
			out = append(out, Swept{r, Kept})
			continue
		}
		var removed bool
		var err error
		switch r.Kind {
		case Netns:
			removed, err = removeNetns(r.Name)
		case BPFFS:
			removed, err = removeBPFFS(r.Name)
		default:
			err = fmt.Errorf("sweep %s %s: not a kind Sweep removes", r.Kind, r.Name)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := g.Release(r.Kind, r.Name); err != nil {
			errs = append(errs, err)
		}
		o := Forgotten
		if removed {
			o = Removed
		}
		out = append(out, Swept{r, o})
	}
	return out, errors.Join(errs...)
}

func removeNetns(name string) (bool, error) {
	if _, err := os.Lstat(filepath.Join(netns.Dir, name)); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err := netns.Remove(name); err != nil {
		return false, err
	}
	return true, nil
}

// removeBPFFS unmounts a bpffs (which drops what is pinned in it) and
// removes the then empty mount point.
func removeBPFFS(dir string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("bpffs %s: %w", dir, err)
	}
	removed := false
	if st.Type == unix.BPF_FS_MAGIC {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			return false, fmt.Errorf("unmount bpffs %s: %w", dir, err)
		}
		removed = true
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
		return removed, fmt.Errorf("remove bpffs mount point %s: %w", dir, err)
	}
	return removed, nil
}

// StartTime returns a process's start time in clock ticks after boot.
func StartTime(pid int) (uint64, error) {
	start, _, err := stat(pid)
	return start, err
}

// Running reports whether the process pid runs, started at start (not a
// later process given the same pid) and has not exited (a zombie has).
func Running(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	got, state, err := stat(pid)
	return err == nil && got == start && state != 'Z' && state != 'X'
}

// stat reads the start time (field 22) and state (field 3) of
// /proc/PID/stat. The command name (field 2) is in parentheses and may
// hold spaces and parentheses itself, so fields are counted after the last
// ')'.
func stat(pid int) (start uint64, state byte, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("process %d: %w", pid, err)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("process %d: unreadable stat %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("process %d: unreadable stat %q", pid, b)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("process %d: start time %q: %w", pid, f[19], err)
	}
	return start, f[0][0], nil
}
