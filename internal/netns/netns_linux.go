//go:build linux

package netns

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Dir is where named network namespaces are bind-mounted (as iproute2 does).
const Dir = "/var/run/netns"

// NS is a named network namespace. The zero value is not usable; get one from
// New or Open. An NS holds an open file descriptor on the namespace; Close
// releases it, Delete also removes the name (the namespace itself disappears
// when no process, interface-holding socket or mount refers to it any more).
type NS struct {
	name string
	path string
	h    vnetns.NsHandle
}

// New creates the named network namespace and bind-mounts it under Dir. The
// namespace is created on a locked OS thread in a fresh goroutine; that
// thread is discarded afterwards, so the caller's thread is never switched.
// It fails if a namespace of that name already exists.
func New(name string) (*NS, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	type result struct {
		h   vnetns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Deliberately never unlocked: the thread ends up in the new
		// namespace and the runtime terminates it when this goroutine exits.
		runtime.LockOSThread()
		h, err := vnetns.NewNamed(name)
		ch <- result{h, err}
	}()
	r := <-ch
	if r.err != nil {
		return nil, fmt.Errorf("create netns %s: %w", name, r.err)
	}
	return &NS{name: name, path: filepath.Join(Dir, name), h: r.h}, nil
}

// Open opens an existing named namespace (under Dir) or, if name is an
// absolute path, the namespace file at that path (such as /proc/PID/ns/net).
func Open(name string) (*NS, error) {
	path := name
	if !filepath.IsAbs(name) {
		if err := validName(name); err != nil {
			return nil, err
		}
		path = filepath.Join(Dir, name)
	}
	h, err := vnetns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	return &NS{name: filepath.Base(name), path: path, h: h}, nil
}

// Name returns the namespace's name (the base name of its path).
func (ns *NS) Name() string { return ns.name }

// Path returns the namespace's file path, e.g. /var/run/netns/NAME.
func (ns *NS) Path() string { return ns.path }

// Fd returns the open file descriptor on the namespace, or -1 once closed.
func (ns *NS) Fd() int { return int(ns.h) }

// Handle returns a netlink handle bound to the namespace; it may be used from
// any goroutine. The caller closes it (Handle.Close).
func (ns *NS) Handle() (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(ns.h)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in netns %s: %w", ns.name, err)
	}
	return h, nil
}

// Do runs fn on a fresh OS thread switched into the namespace and waits for
// it. Sockets and handles created inside fn stay in the namespace. Goroutines
// that fn starts do not inherit the namespace. If the thread cannot be
// switched back, it is left locked so the runtime discards it with the
// goroutine, and Do reports the error.
func (ns *NS) Do(fn func() error) error { return do(ns.h, ns.name, fn) }

// DoPath runs fn like NS.Do in the network namespace at path (a file such
// as /var/run/netns/NAME or /proc/PID/ns/net); "" runs fn directly in the
// caller's namespace.
func DoPath(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	h, err := vnetns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer h.Close()
	return do(h, path, fn)
}

// do runs fn on a locked OS thread switched into h (called name in
// errors). The thread returns to its namespace and is unlocked; if it
// cannot return it stays locked, and the runtime discards it with the
// goroutine. fn's error is kept in every case.
func do(h vnetns.NsHandle, name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := vnetns.Set(h); err != nil {
			// Setns failed, so the thread is still where it was, but be
			// conservative: leave it locked and let it die.
			errc <- fmt.Errorf("enter netns %s: %w", name, err)
			return
		}
		fnErr := fn()
		if err := vnetns.Set(orig); err != nil {
			// Tainted thread: stay locked, the runtime kills it on exit.
			errc <- errors.Join(fnErr, fmt.Errorf("restore netns after %s: %w", name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

// Close releases the file descriptor; the name stays.
func (ns *NS) Close() error {
	if ns.h == -1 {
		return nil
	}
	err := ns.h.Close()
	ns.h = -1
	if err != nil {
		return fmt.Errorf("close netns %s: %w", ns.name, err)
	}
	return nil
}

// Delete closes the namespace and removes its name (unmounts and removes the
// file under Dir). It is safe to call more than once.
func (ns *NS) Delete() error {
	cerr := ns.Close()
	if ns.path != filepath.Join(Dir, ns.name) {
		return cerr // opened by path: not ours to remove
	}
	return errors.Join(cerr, Remove(ns.name))
}

// Remove removes a named namespace by name without opening it; a name that
// does not exist is not an error. Useful to clean up after a crash.
func Remove(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	path := filepath.Join(Dir, name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", name, err)
	}
	err := os.Remove(path)
	if errors.Is(err, unix.EBUSY) {
		// Still a mount point: the name was mounted before Dir became a
		// (recursive) bind mount of itself, as `ip netns add` makes it on
		// a machine where it is not one yet, so a copy of the mount hides
		// the original beneath that bind mount.
		err = removeCovered(path)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", name, err)
	}
	return nil
}

// removeCovered removes the namespace file path whose original mount is
// covered by a later bind mount of its directory: in a private mount
// namespace on a thread that is then thrown away, it unmounts what covers
// the directory and the mounts on the file, and unlinks the file; the
// kernel then detaches the mounts left on it in every other mount
// namespace.
func removeCovered(path string) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread leaves the host mount namespace and
		// the runtime terminates it when this goroutine exits.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("private mount namespace: %w", err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
			errc <- fmt.Errorf("private mount namespace: %w", err)
			return
		}
		dir := filepath.Dir(path)
		for range 8 {
			for unix.Unmount(path, unix.MNT_DETACH) == nil {
			}
			err := os.Remove(path)
			if !errors.Is(err, unix.EBUSY) {
				if errors.Is(err, os.ErrNotExist) {
					err = fmt.Errorf("%s is not beneath a bind mount of %s: %w", path, dir, unix.EBUSY)
				}
				errc <- err
				return
			}
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				errc <- fmt.Errorf("still mounted, and %s is not a mount point: %w", dir, unix.EBUSY)
				return
			}
		}
		errc <- fmt.Errorf("still mounted beneath 8 mounts of %s: %w", dir, unix.EBUSY)
	}()
	return <-errc
}

// List returns the names of the namespaces under Dir.
func List() ([]string, error) {
	ents, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list netns: %w", err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

// Unique returns prefix followed by 8 random base-36 characters (41 bits),
// so that names made by concurrent test runs do not collide. The result is
// at most 15 characters when prefix is at most 7, so it can also name an
// interface.
func Unique(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	v := binary.LittleEndian.Uint64(b[:]) & (1<<41 - 1)
	s := strconv.FormatUint(v, 36)
	for len(s) < 8 {
		s = "0" + s
	}
	return prefix + s
}

func validName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 255 {
		return fmt.Errorf("netns name %q: invalid", name)
	}
	for _, c := range name {
		if c == '/' || c == 0 {
			return fmt.Errorf("netns name %q: invalid character", name)
		}
	}
	return nil
}
