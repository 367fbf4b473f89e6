// Package qmp is a small QEMU Machine Protocol client over a unix socket:
// commands with a context, and the event stream (STOP, RESUME, MIGRATION,
// ...) delivered to a callback. It wraps github.com/digitalocean/go-qemu's
// qmp.SocketMonitor, the only package of the module that imports it; the lab's
// QEMU guests (deploy/lab/vm) and ilad's commit on a guest's resume use it.
//
// QEMU serves one QMP client per socket at a time: hold a Monitor only as
// long as needed, or share one.
package qmp
