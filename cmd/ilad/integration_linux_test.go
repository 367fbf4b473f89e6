//go:build linux

package main

import (
	"bufio"
	"fmt"
	"net"
	"testing"
	"time"
)

// TestIntegrationLab runs three NVEs with real ilads, mapsrv, etcd and
// eBPF datapaths, and tasks in their own namespaces.
func TestIntegrationLab(t *testing.T) {
	l := newLab(t, 3)
	n1, n2, n3 := l.nves[0], l.nves[1], l.nves[2]
	a := l.addTask(n1, "a", 0x1001)
	b := l.addTask(n2, "b", 0x1002)
	c := l.addTask(n3, "c", 0x1003)
	for _, tk := range []*labTask{a, b, c} {
		l.waitMapping(tk, tk.nve)
	}

	t.Run("ping across NVEs", func(t *testing.T) {
		for _, p := range [][2]*labTask{{a, b}, {b, c}, {c, a}} {
			if err := ping(t, p[0], p[1].sir, 3); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("tcp across NVEs", func(t *testing.T) {
		var ln net.Listener
		if err := b.ns.Do(func() error {
			var err error
			ln, err = net.Listen("tcp6", fmt.Sprintf("[%s]:5000", b.sir))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			line, _ := bufio.NewReader(c).ReadString('\n')
			fmt.Fprintf(c, "echo %s", line)
		}()
		var conn net.Conn
		if err := a.ns.Do(func() error {
			var err error
			conn, err = net.DialTimeout("tcp6", fmt.Sprintf("[%s]:5000", b.sir), 3*time.Second)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		fmt.Fprintf(conn, "hello over ila\n")
		got, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || got != "echo hello over ila\n" {
			t.Errorf("tcp answer %q, %v", got, err)
		}
	})
}
