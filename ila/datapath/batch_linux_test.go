package datapath

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/testutil"
)

func openPlain(t *testing.T, cfg Config) *Datapath {
	t.Helper()
	testutil.Privileged(t)
	d, err := Open(cfg)
	if err != nil {
		if errors.Is(err, ErrNotSupported) {
			t.Skipf("kernel: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// tables reads the mapping table and the locator space (with reference
// counts) as the kernel holds them.
func tables(t *testing.T, d *Datapath) (map[xlatIlaKey]xlatIlaMapVal, map[uint64]xlatIlaLocspaceVal) {
	t.Helper()
	maps := map[xlatIlaKey]xlatIlaMapVal{}
	var (
		k xlatIlaKey
		v xlatIlaMapVal
	)
	it := d.objs.IlaMappings.Iterate() // not the code under test (dumpMappings)
	for it.Next(&k, &v) {
		maps[k] = v
	}
	must(t, it.Err())
	locs := map[uint64]xlatIlaLocspaceVal{}
	must(t, readAll(d.objs.IlaLocspace, locs))
	return maps, locs
}

// TestUpsertMappingsAsOneByOne checks that a batch leaves the kernel's
// tables (mappings, locator space reference counts) exactly as the same
// mappings written one by one, for small batches (key lookups) and large
// ones (the table read in batches), with moves, refreshes and repeated
// keys; and that a batch stopped by a bad mapping or a full table reports
// the prefix that took effect.
func TestUpsertMappingsAsOneByOne(t *testing.T) {
	e := envFor(ila.CsumNeutralMap)
	locs := []ila.Locator{e.remote, e.newHome, e.remote + 0x100, e.remote + 0x200}
	gen := func(n, shift int) []ila.Mapping {
		ms := make([]ila.Mapping, n)
		for i := range ms {
			ms[i] = ila.Mapping{SIR: e.dom.SIR, Identifier: ila.Identifier(0x2000_0000_0000_0001 + uint64(i)<<16), Locator: locs[(i+shift)%len(locs)], Csum: e.mode, Tenant: ila.TenantID(i % 3)}
		}
		return ms
	}
	for _, n := range []int{10, dumpLimit + 1000} {
		one := openPlain(t, Config{MaxMappings: 1 << 14})
		bat := openPlain(t, Config{MaxMappings: 1 << 14})
		for _, d := range []*Datapath{one, bat} {
			must(t, d.AddLocator(e.own, e.dom))
		}
		first := gen(n, 0)
		// The second round moves every other entry, refreshes the rest
		// and writes one key twice (the later value wins).
		second := gen(n, 0)
		for i := range second {
			if i%2 == 0 {
				second[i].Locator = locs[(i+1)%len(locs)]
			}
		}
		second = append(second, ila.Mapping{SIR: e.dom.SIR, Identifier: second[0].Identifier, Locator: e.own, Csum: e.mode})
		for _, round := range [][]ila.Mapping{first, second} {
			for _, m := range round {
				must(t, one.UpsertMapping(m))
			}
			got, err := bat.UpsertMappings(round)
			must(t, err)
			if got != len(round) {
				t.Errorf("n=%d: UpsertMappings = %d, want %d", n, got, len(round))
			}
			wm, wl := tables(t, one)
			gm, gl := tables(t, bat)
			if diff := cmp.Diff(wm, gm); diff != "" {
				t.Errorf("n=%d: mapping table (-one by one +batch)\n%s", n, diff)
			}
			if diff := cmp.Diff(wl, gl); diff != "" {
				t.Errorf("n=%d: locator space (-one by one +batch)\n%s", n, diff)
			}
		}
		var listed int
		must(t, bat.Mappings(func(ila.Mapping) bool { listed++; return true }))
		if listed != n {
			t.Errorf("Mappings listed %d, want %d", listed, n)
		}
	}

	t.Run("stops at a bad mapping", func(t *testing.T) {
		one := openPlain(t, Config{MaxMappings: 1 << 10})
		bat := openPlain(t, Config{MaxMappings: 1 << 10})
		ms := gen(20, 0)
		// A locator that already serves another SIR prefix.
		ms[7].SIR, ms[7].Csum = envFor(ila.CsumNoAction).dom.SIR, ila.CsumNoAction
		ms[7].Locator = e.remote
		n, err := bat.UpsertMappings(ms)
		if !errors.Is(err, ila.ErrLocatorConflict) || n != 7 {
			t.Fatalf("UpsertMappings = %d, %v; want 7, a locator conflict", n, err)
		}
		for _, m := range ms[:7] {
			must(t, one.UpsertMapping(m))
		}
		wm, wl := tables(t, one)
		gm, gl := tables(t, bat)
		if diff := cmp.Diff(wm, gm); diff != "" {
			t.Errorf("mapping table (-one by one +batch)\n%s", diff)
		}
		if diff := cmp.Diff(wl, gl); diff != "" {
			t.Errorf("locator space (-one by one +batch)\n%s", diff)
		}
	})

	t.Run("full table", func(t *testing.T) {
		one := openPlain(t, Config{MaxMappings: 100})
		bat := openPlain(t, Config{MaxMappings: 100})
		ms := gen(150, 0)
		n, err := bat.UpsertMappings(ms)
		if !errors.Is(err, ErrFull) || n != 100 {
			t.Fatalf("UpsertMappings = %d, %v; want 100, ErrFull", n, err)
		}
		for _, m := range ms[:100] {
			must(t, one.UpsertMapping(m))
		}
		wm, wl := tables(t, one)
		gm, gl := tables(t, bat)
		if diff := cmp.Diff(wm, gm); diff != "" {
			t.Errorf("mapping table (-one by one +batch)\n%s", diff)
		}
		if diff := cmp.Diff(wl, gl); diff != "" {
			t.Errorf("locator space (-one by one +batch)\n%s", diff)
		}
		if s, _ := bat.Stats(); s.FullErrors != 1 {
			t.Errorf("FullErrors = %d, want 1", s.FullErrors)
		}
	})
}

// TestAddLocatorMarksExisting: a locator added after mappings to it were
// written flags them all as own (more than one BPF_MAP_LOOKUP_BATCH
// chunk of them), and removing it clears the flags; mappings to other
// locators are left alone.
func TestAddLocatorMarksExisting(t *testing.T) {
	testutil.Privileged(t)
	d, err := Open(Config{MaxMappings: 1 << 15})
	if err != nil {
		if errors.Is(err, ErrNotSupported) {
			t.Skipf("kernel: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	e := envFor(ila.CsumNeutralMap)
	const n = batchChunk + 1000
	var ms []ila.Mapping
	for i := range n {
		loc := e.own
		if i%10 == 0 {
			loc = e.remote
		}
		ms = append(ms, ila.Mapping{SIR: e.dom.SIR, Identifier: ila.Identifier(0x1000 + i), Locator: loc, Csum: e.mode})
	}
	if w, err := d.UpsertMappings(ms); err != nil || w != n {
		t.Fatalf("UpsertMappings = %d, %v", w, err)
	}
	flagged := func() (own, wrong int) {
		t.Helper()
		must(t, d.dumpMappings(func(k xlatIlaKey, v xlatIlaMapVal) bool {
			isOwn := v.Flags&uint8(xlatIlaMapFlagILA_MAP_F_OWN_LOC) != 0
			if isOwn {
				own++
			}
			if isOwn && v.Loc != ne(uint64(e.own)) {
				wrong++
			}
			return true
		}))
		return own, wrong
	}
	if own, _ := flagged(); own != 0 {
		t.Fatalf("%d mappings flagged own before the locator was added", own)
	}
	must(t, d.AddLocator(e.own, e.dom))
	if own, wrong := flagged(); own != n-n/10-1 || wrong != 0 {
		t.Errorf("after AddLocator: %d flagged own (%d to another locator), want %d", own, wrong, n-n/10-1)
	}
	must(t, d.RemoveLocator(e.own))
	if own, _ := flagged(); own != 0 {
		t.Errorf("after RemoveLocator: %d still flagged own", own)
	}
}
