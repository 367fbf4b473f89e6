package dnsbridge

import (
	"encoding/binary"
	"hash/maphash"
	"unsafe"
)

// blobMap maps strings to byte strings without a Go pointer per entry.
// Entries (key and value side by side) are appended to one byte slice;
// the index is an open-addressing hash table (linear probing) of uint64
// slots, each the entry's offset and some bits of its key's hash. The
// garbage collector has nothing to scan however many entries there are,
// and a lookup touches one slot (mostly one cache line) and one entry.
// Both large arrays ask for transparent huge pages (adviseHuge).
//
// Values are never modified in place (except by addCount): a write
// appends a new entry and a compaction copies the live entries into a new
// slice, so a value returned by get stays valid and unchanged.
type blobMap struct {
	hash  func(string) uint64
	slots []uint64 // 0: empty; else tag<<tagShift | (offset+1)
	n     int      // entries
	data  []byte
	live  int // bytes of data in entries still referenced
}

// entHdr is the header of an entry: key length and value length (uint32).
const entHdr = 8

// compactMin is the size of data below which no compaction is done.
const compactMin = 1 << 20

// A slot keeps the entry's offset+1 in its low 44 bits (16 TB) and the top
// 20 bits of the key's hash above.
const (
	tagShift = 44
	offMask  = 1<<tagShift - 1
)

func newBlobMap() *blobMap {
	seed := maphash.MakeSeed()
	return &blobMap{
		hash:  func(s string) uint64 { return maphash.String(seed, s) },
		slots: make([]uint64, 16),
	}
}

func tagOf(h uint64) uint64 { return h >> tagShift }

func (m *blobMap) entry(off uint64) (key, val []byte) {
	b := m.data[off:]
	kl := uint64(binary.LittleEndian.Uint32(b))
	vl := uint64(binary.LittleEndian.Uint32(b[4:]))
	v := b[entHdr+kl : entHdr+kl+vl]
	return b[entHdr : entHdr+kl], v[:vl:vl]
}

func (m *blobMap) size(off uint64) int {
	k, v := m.entry(off)
	return entHdr + len(k) + len(v)
}

// find returns the slot of key, or the empty slot where it would go and
// false.
func (m *blobMap) find(key string, h uint64) (int, bool) {
	mask := len(m.slots) - 1
	tag := tagOf(h)
	for i := int(h) & mask; ; i = (i + 1) & mask {
		s := m.slots[i]
		if s == 0 {
			return i, false
		}
		if s>>tagShift == tag {
			if k, _ := m.entry(s&offMask - 1); string(k) == key {
				return i, true
			}
		}
	}
}

// get returns the value of key. The caller must not modify it.
func (m *blobMap) get(key string) ([]byte, bool) {
	i, ok := m.find(key, m.hash(key))
	if !ok {
		return nil, false
	}
	_, v := m.entry(m.slots[i]&offMask - 1)
	return v, true
}

func (m *blobMap) len() int { return m.n }

// set stores val (copied) under key.
func (m *blobMap) set(key string, val []byte) {
	off := uint64(len(m.data))
	if n := len(m.data) + entHdr + len(key) + len(val); n > cap(m.data) {
		// Advised before the copy touches the pages.
		// Doubling while small, by a quarter when large (as append).
		c := cap(m.data)
		if c < 1<<20 {
			c *= 2
		} else {
			c += c / 4
		}
		nd := make([]byte, 0, max(n, c, 4096))
		adviseHuge(unsafe.Pointer(unsafe.SliceData(nd)), cap(nd))
		m.data = append(nd, m.data...)
	}
	m.data = binary.LittleEndian.AppendUint32(m.data, uint32(len(key)))
	m.data = binary.LittleEndian.AppendUint32(m.data, uint32(len(val)))
	m.data = append(m.data, key...)
	m.data = append(m.data, val...)
	m.live += entHdr + len(key) + len(val)
	h := m.hash(key)
	i, ok := m.find(key, h)
	if ok {
		m.live -= m.size(m.slots[i]&offMask - 1)
	} else {
		m.n++
	}
	m.slots[i] = tagOf(h)<<tagShift | (off + 1)
	if 2*m.n > len(m.slots) {
		m.grow()
	}
	m.compact()
}

func (m *blobMap) grow() {
	old := m.slots
	m.slots = make([]uint64, 2*len(old))
	adviseHuge(unsafe.Pointer(unsafe.SliceData(m.slots)), 8*len(m.slots))
	mask := len(m.slots) - 1
	for _, s := range old {
		if s == 0 {
			continue
		}
		k, _ := m.entry(s&offMask - 1)
		i := int(m.hash(string(k))) & mask
		for m.slots[i] != 0 {
			i = (i + 1) & mask
		}
		m.slots[i] = s
	}
}

// del removes key and reports whether it was there.
func (m *blobMap) del(key string) bool {
	i, ok := m.find(key, m.hash(key))
	if !ok {
		return false
	}
	m.live -= m.size(m.slots[i]&offMask - 1)
	m.n--
	// Backward shift: move up the entries after i whose probe sequence
	// passes over i, so that no lookup stops at the hole.
	mask := len(m.slots) - 1
	for j := (i + 1) & mask; m.slots[j] != 0; j = (j + 1) & mask {
		k, _ := m.entry(m.slots[j]&offMask - 1)
		home := int(m.hash(string(k))) & mask
		// The entry at j may move to i unless its home lies in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			m.slots[i] = m.slots[j]
			i = j
		}
	}
	m.slots[i] = 0
	return true
}

// addCount adds by to the counter stored under key (a 4-byte value,
// modified in place) and removes the key when the counter drops to zero
// or below.
func (m *blobMap) addCount(key string, by int) {
	i, ok := m.find(key, m.hash(key))
	if !ok {
		if by > 0 {
			m.set(key, binary.LittleEndian.AppendUint32(nil, uint32(by)))
		}
		return
	}
	_, v := m.entry(m.slots[i]&offMask - 1)
	n := int(binary.LittleEndian.Uint32(v)) + by
	if n <= 0 {
		m.del(key)
		return
	}
	binary.LittleEndian.PutUint32(v, uint32(n))
}

// count returns the counter stored under key by addCount.
func (m *blobMap) count(key string) int {
	v, ok := m.get(key)
	if !ok {
		return 0
	}
	return int(binary.LittleEndian.Uint32(v))
}

// each calls fn with every entry; fn must not modify the map.
func (m *blobMap) each(fn func(key, val []byte)) {
	for _, s := range m.slots {
		if s != 0 {
			fn(m.entry(s&offMask - 1))
		}
	}
}

// compact copies the live entries into a new slice once more than half
// of data is garbage.
func (m *blobMap) compact() {
	if len(m.data) < compactMin || len(m.data) < 2*m.live {
		return
	}
	nd := make([]byte, 0, m.live+m.live/4)
	adviseHuge(unsafe.Pointer(unsafe.SliceData(nd)), cap(nd))
	for i, s := range m.slots {
		if s == 0 {
			continue
		}
		off := s&offMask - 1
		m.slots[i] = s&^offMask | uint64(len(nd)) + 1
		nd = append(nd, m.data[off:off+uint64(m.size(off))]...)
	}
	m.data = nd
}
