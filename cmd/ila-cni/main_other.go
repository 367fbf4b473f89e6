//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "ila-cni: Linux only (network namespaces, veth)")
	os.Exit(1)
}
