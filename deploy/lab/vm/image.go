package vm

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// Image is a bootable guest: a kernel and its initramfs.
type Image struct {
	Kernel string `json:"kernel"`
	Initrd string `json:"initrd"`
}

// KernelPackage is the Debian metapackage whose dependency is the
// versioned kernel package the guest boots.
const KernelPackage = "linux-image-amd64"

// BuildImage returns the guest image cached in dir, building what is
// missing: it fetches the kernel package with apt-get download (after an
// apt-get update if the first try fails), unpacks the kernel and the
// virtio-net modules from it, and writes a fresh initramfs with the static
// busybox found on the machine (Debian's busybox-static). progress, if not
// nil, hears about the slow steps.
func BuildImage(ctx context.Context, dir string, progress func(string)) (Image, error) {
	if progress == nil {
		progress = func(string) {}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Image{}, fmt.Errorf("vm image dir: %w", err)
	}
	busybox, err := findBusybox()
	if err != nil {
		return Image{}, err
	}
	kernel := filepath.Join(dir, "vmlinuz")
	modDir := filepath.Join(dir, "modules")
	if !haveKernel(kernel, modDir) {
		deb, err := kernelDeb(ctx, dir, progress)
		if err != nil {
			return Image{}, err
		}
		progress("unpacking the guest kernel from " + filepath.Base(deb))
		if err := unpackKernel(ctx, deb, kernel, modDir); err != nil {
			return Image{}, err
		}
	}
	initrd := filepath.Join(dir, "initrd.img")
	if err := writeInitrd(initrd, busybox, modDir); err != nil {
		return Image{}, err
	}
	return Image{Kernel: kernel, Initrd: initrd}, nil
}

func haveKernel(kernel, modDir string) bool {
	if _, err := os.Stat(kernel); err != nil {
		return false
	}
	for _, m := range Modules {
		if _, err := os.Stat(filepath.Join(modDir, m+".ko")); err != nil {
			return false
		}
	}
	return true
}

// findBusybox returns a statically linked busybox (the guest has no libc).
func findBusybox() (string, error) {
	cands := []string{"/bin/busybox", "/usr/bin/busybox"}
	if p, err := exec.LookPath("busybox"); err == nil {
		cands = append([]string{p}, cands...)
	}
	var errs []error
	for _, p := range cands {
		f, err := elf.Open(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		static := true
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				static = false
			}
		}
		f.Close()
		if static {
			return p, nil
		}
		errs = append(errs, fmt.Errorf("%s is dynamically linked", p))
	}
	return "", fmt.Errorf("vm image: no static busybox (apt-get install busybox-static): %w", errors.Join(errs...))
}

// kernelDeb returns the versioned kernel package in dir, downloading it.
func kernelDeb(ctx context.Context, dir string, progress func(string)) (string, error) {
	if debs, _ := filepath.Glob(filepath.Join(dir, "linux-image-*.deb")); len(debs) > 0 {
		for _, d := range debs {
			if !strings.HasPrefix(filepath.Base(d), KernelPackage+"_") {
				return d, nil
			}
		}
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return "", fmt.Errorf("vm image: no guest kernel in %s and no apt-get to fetch %s: %w", dir, KernelPackage, err)
	}
	updated := false
	for {
		name, err := kernelPackageName(ctx)
		if err == nil {
			progress("downloading guest kernel package " + name)
			out, derr := runIn(ctx, dir, "apt-get", "download", name)
			if derr == nil {
				debs, _ := filepath.Glob(filepath.Join(dir, name+"_*.deb"))
				if len(debs) > 0 {
					return debs[0], nil
				}
				err = fmt.Errorf("apt-get download %s left no package in %s", name, dir)
			} else {
				err = fmt.Errorf("apt-get download %s: %w: %s", name, derr, lastLine(out))
			}
		}
		if updated || ctx.Err() != nil {
			return "", fmt.Errorf("vm image: fetch guest kernel: %w", err)
		}
		progress("apt-get update (to find " + KernelPackage + ")")
		if out, uerr := runIn(ctx, dir, "apt-get", "update", "-qq"); uerr != nil {
			return "", fmt.Errorf("vm image: fetch guest kernel: %w; apt-get update: %w: %s", err, uerr, lastLine(out))
		}
		updated = true
	}
}

// kernelPackageName resolves the metapackage to its versioned kernel.
func kernelPackageName(ctx context.Context) (string, error) {
	out, err := runIn(ctx, "", "apt-cache", "depends", KernelPackage)
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s: %w: %s", KernelPackage, err, lastLine(out))
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("apt-cache depends %s: no linux-image dependency", KernelPackage)
}

func runIn(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	return cmd.CombinedOutput()
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// unpackKernel extracts the kernel image and the modules from deb (read
// through dpkg-deb's tar stream; nothing is installed).
func unpackKernel(ctx context.Context, deb, kernel, modDir string) error {
	if err := os.MkdirAll(modDir, 0o755); err != nil {
		return fmt.Errorf("vm image: %w", err)
	}
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("vm image: dpkg-deb: %w", err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("vm image: dpkg-deb: %w", err)
	}
	want := map[string]bool{}
	for _, m := range Modules {
		want[m] = true
	}
	gotKernel := false
	got := map[string]bool{}
	tr := tar.NewReader(out)
	var terr error
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			terr = err
			break
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		base := path.Base(h.Name)
		switch {
		case strings.HasPrefix(h.Name, "./boot/vmlinuz-") || strings.HasPrefix(h.Name, "boot/vmlinuz-"):
			if terr = writeFrom(kernel, tr); terr == nil {
				gotKernel = true
			}
		case strings.Contains(h.Name, "/kernel/") && strings.Contains(base, ".ko"):
			name, comp, _ := strings.Cut(base, ".ko")
			if !want[name] || got[name] {
				continue
			}
			if terr = writeModule(ctx, filepath.Join(modDir, name+".ko"), comp, tr); terr == nil {
				got[name] = true
			}
		}
		if terr != nil {
			break
		}
	}
	_, _ = io.Copy(io.Discard, out)
	werr := cmd.Wait()
	if terr != nil {
		return fmt.Errorf("vm image: read %s: %w", deb, terr)
	}
	if werr != nil {
		return fmt.Errorf("vm image: dpkg-deb --fsys-tarfile %s: %w: %s", deb, werr, lastLine(stderr.Bytes()))
	}
	if !gotKernel {
		return fmt.Errorf("vm image: %s holds no boot/vmlinuz-*", deb)
	}
	for _, m := range Modules {
		if !got[m] {
			return fmt.Errorf("vm image: %s holds no module %s", deb, m)
		}
	}
	return nil
}

// writeFrom writes dst atomically (labs and tests may build the same
// cache at once).
func writeFrom(dst string, r io.Reader) error {
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), dst)
}

// writeModule stores a module uncompressed (busybox insmod may not read
// compressed ones): comp is what followed ".ko" in its name.
func writeModule(ctx context.Context, dst, comp string, r io.Reader) error {
	var tool string
	switch comp {
	case "":
		return writeFrom(dst, r)
	case ".xz":
		tool = "xz"
	case ".zst":
		tool = "zstd"
	case ".gz":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("module %s: %w", filepath.Base(dst), err)
		}
		return writeFrom(dst, zr)
	default:
		return fmt.Errorf("module %s: unknown compression %q", filepath.Base(dst), comp)
	}
	cmd := exec.CommandContext(ctx, tool, "-dc")
	cmd.Stdin = r
	b, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("module %s: %s -dc: %w", filepath.Base(dst), tool, err)
	}
	return writeFrom(dst, bytes.NewReader(b))
}

// writeInitrd writes the gzip'd newc initramfs to dst.
func writeInitrd(dst, busybox, modDir string) error {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("vm image: %w", err)
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	c := &cpioWriter{w: zw}
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"} {
		c.dir(d)
	}
	c.chr("dev/console", 5, 1)
	c.chr("dev/null", 1, 3)
	c.file("bin/busybox", 0o755, bb)
	c.file("init", 0o755, []byte(initScript))
	for _, m := range Modules {
		b, err := os.ReadFile(filepath.Join(modDir, m+".ko"))
		if err != nil {
			return fmt.Errorf("vm image: %w", err)
		}
		c.file("lib/modules/"+m+".ko", 0o644, b)
	}
	if err := c.close(); err != nil {
		return fmt.Errorf("vm image: initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("vm image: initramfs: %w", err)
	}
	if err := writeFrom(dst, &buf); err != nil {
		return fmt.Errorf("vm image: %w", err)
	}
	return nil
}
