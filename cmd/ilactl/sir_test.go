package main

import (
	"strings"
	"testing"
)

// TestRegisterOneSIR: --sir given twice is refused with a reason (a task
// has one SIR address), not silently cut to the last one; nothing is sent
// (the API address does not exist).
func TestRegisterOneSIR(t *testing.T) {
	_, err := ilactl(t, "--api", "http://[::1]:1", "task", "register", "web", "--tenant", "t", "--nve", "n",
		"--sir", "2001:db8::1", "--sir", "2001:db8::2")
	if err == nil || !strings.Contains(err.Error(), "--sir given 2 times: a task has one SIR address") {
		t.Errorf("two --sir: %v, want the one-address refusal", err)
	}
}
