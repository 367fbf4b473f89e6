package dnsbridge

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

const hugePage = 2 << 20

// adviseHuge asks the kernel to back the 2 MiB-aligned interior of the n
// bytes at p with transparent huge pages (MADV_HUGEPAGE, which is what
// "madvise", the usual transparent_hugepage setting, waits for). A lookup
// in a large zone reads a random index slot and a random entry: with 4 KiB
// pages each read is also a TLB miss, a costly page walk in a virtual
// machine (docs/SCALE.md, dnsbridge). Regions under 4 MiB are left alone;
// a failure only leaves the pages as they are.
func adviseHuge(p unsafe.Pointer, n int) {
	if n < 2*hugePage {
		return
	}
	start := (uintptr(p) + hugePage - 1) &^ (hugePage - 1)
	end := (uintptr(p) + uintptr(n)) &^ (hugePage - 1)
	if end <= start {
		return
	}
	_ = unix.Madvise(unsafe.Slice((*byte)(unsafe.Add(p, start-uintptr(p))), end-start), unix.MADV_HUGEPAGE)
}
