package vm

import (
	"fmt"
	"io"
)

// cpioWriter writes a "newc" cpio archive, the format the kernel unpacks
// as an initramfs.
type cpioWriter struct {
	w    io.Writer
	ino  int
	err  error
	done bool
}

const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeChr  = 0o020000
)

func (c *cpioWriter) entry(name string, mode uint32, rdevMajor, rdevMinor int, data []byte) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := 1
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	if _, err := io.WriteString(c.w, hdr+name+"\x00"); err != nil {
		c.err = err
		return
	}
	c.pad(len(hdr) + len(name) + 1)
	if _, err := c.w.Write(data); err != nil {
		c.err = err
		return
	}
	c.pad(len(data))
}

func (c *cpioWriter) pad(n int) {
	if c.err != nil || n%4 == 0 {
		return
	}
	_, c.err = c.w.Write(make([]byte, 4-n%4))
}

func (c *cpioWriter) dir(name string)                         { c.entry(name, modeDir|0o755, 0, 0, nil) }
func (c *cpioWriter) file(name string, perm uint32, b []byte) { c.entry(name, modeFile|perm, 0, 0, b) }
func (c *cpioWriter) chr(name string, major, minor int) {
	c.entry(name, modeChr|0o600, major, minor, nil)
}

// close writes the trailer.
func (c *cpioWriter) close() error {
	if !c.done {
		c.done = true
		c.entry("TRAILER!!!", 0, 0, 0, nil)
	}
	return c.err
}
