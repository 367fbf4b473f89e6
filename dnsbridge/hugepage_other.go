//go:build !linux

package dnsbridge

import "unsafe"

func adviseHuge(unsafe.Pointer, int) {}
