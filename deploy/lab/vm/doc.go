// Package vm runs the lab's virtual-machine tasks: real QEMU guests (TCG,
// so no VT-x is needed) with a tap device in an NVE's network namespace,
// and their live migration between two QEMUs over a unix socket, driven
// over QMP as libvirt drives it.
//
// The guest image is built on the machine from Debian packages and cached
// in a directory: the kernel comes from the linux-image package (fetched
// with apt-get download and unpacked, never installed), the initramfs is
// busybox-static, the eight virtio-net modules (the unpacked package has no
// modules.dep, so init loads them in dependency order) and an init script
// that configures the address given on the kernel command line, answers
// ping and runs a TCP echo responder on port 5001.
//
// The package sits under deploy/lab because it deploys tasks as the lab
// does; it knows nothing of ilad or the mapping service: the caller
// prepares the destination port (as a libvirt hook would) between starting
// the incoming QEMU and migrating.
package vm
