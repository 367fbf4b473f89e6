package regproto

import (
	"os"
	"strings"
	"testing"
)

// TestDocProvenance keeps docs/registration.md honest about where its
// conventions come from: the PMIPv6 ones are not credited to the draft, the
// source address rule is stated, and every deliberate difference from
// pmip-04 the implementation makes is listed with its reason.
func TestDocProvenance(t *testing.T) {
	b, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, bad := range []string{
		"Status (byte 0 of the Status option), as in the draft", // the split at 128 is PMIPv6's
		"granted\nequal or lower by mapsrv, 0 deregistering",    // lifetime 0 is PMIPv6's
	} {
		if strings.Contains(doc, bad) {
			t.Errorf("docs/registration.md credits a PMIPv6 convention to the draft: %q", bad)
		}
	}
	sec := section(doc, "## 0. Provenance")
	if sec == "" {
		t.Fatal("docs/registration.md has no section 0 (provenance and differences from pmip-04)")
	}
	for _, want := range []string{
		"RFC 6275", "RFC 5213", // where the status split and lifetime 0 come from
		"source address is **ignored**", "owner of the Key ID", // the draft's care-of source address
		"**N flag**",                     // notifications are marked
		"in-flight time",                 // the notification's lifetime
		"at most one IPv6 (SIR) address", // repeated VM address options refused
		"Move Mode option",               // modes signalled
		"no ToR registration, no BGP",    // sections 7.2 and 7.3 not implemented
		"HMAC-SHA256 on every message",   // security
		"refused (reason 7)",             // crossing re-registrations
		"`mapsrv --suspend-timeout`",     // suspensions end
	} {
		if !strings.Contains(sec, want) {
			t.Errorf("section 0 of docs/registration.md does not say %q", want)
		}
	}
}

// section returns the text of the Markdown section starting with heading
// up to the next "## ".
func section(doc, heading string) string {
	i := strings.Index(doc, heading)
	if i < 0 {
		return ""
	}
	rest := doc[i+len(heading):]
	if j := strings.Index(rest, "\n## "); j >= 0 {
		rest = rest[:j]
	}
	return rest
}
