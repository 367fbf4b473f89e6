package dnsbridge

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/miekg/dns"
)

// TestSuspendedTask: while a cold move suspends a task, DNS publishes no
// locator for it (no ILA address, no locator in the TXT record); its SIR
// address stays (it never changes). Once it registers at its destination
// the new locator is published.
func TestSuspendedTask(t *testing.T) {
	web := testTask(t, "web", "blue", 0x1001, locA, "nve1", "")
	z := testZone(t, Config{}, upsert(1, testDomain), upsert(2, web), synced(2))
	idName := web.Identifier.Hex() + ".id.ila.internal."
	ans := func(qtype uint16) []string { return rrStrings(z.lookup(idName, qtype).answer) }
	if got := ans(dns.TypeAAAA); len(got) != 1 {
		t.Fatalf("active: AAAA %v, want the ILA address", got)
	}

	susp := web
	susp.State, susp.Version = ila.StateSuspended, 2
	z.apply(upsert(3, susp))
	if got := ans(dns.TypeAAAA); len(got) != 0 {
		t.Errorf("suspended: AAAA %v, want none (no locator)", got)
	}
	wantTXT := []string{idName + "\t5\tIN\tTXT\t\"version=2\" \"state=suspended\" \"domain=dc1\""}
	if diff := cmp.Diff(wantTXT, ans(dns.TypeTXT)); diff != "" {
		t.Errorf("suspended: TXT (-want +got):\n%s", diff)
	}
	if got := rrStrings(z.lookup("web.blue.ila.internal.", dns.TypeAAAA).answer); len(got) != 1 {
		t.Errorf("suspended: name AAAA %v, want the SIR address", got)
	}

	arrived := web
	arrived.Locator, arrived.NVE, arrived.Version = locB, "nve2", 3
	z.apply(upsert(4, arrived))
	want := []string{idName + "\t5\tIN\tAAAA\t" + ilaAddr(t, arrived).String()}
	if diff := cmp.Diff(want, ans(dns.TypeAAAA)); diff != "" {
		t.Errorf("arrived: AAAA (-want +got):\n%s", diff)
	}
}
