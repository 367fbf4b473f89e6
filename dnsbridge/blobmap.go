package dnsbridge

import (
	"encoding/binary"
	"hash/maphash"
)

// blobMap maps strings to byte strings without a Go pointer per entry.
// Entries (key and value side by side) are appended to one byte slice and
// an index maps a hash of the key to the entry's offset, so the garbage
// collector has nothing to scan however many entries there are, and a
// lookup touches the index and one entry. A key whose hash another key
// already holds in the index goes to a small ordinary map.
//
// Values are never modified in place (except by addCount): a write
// appends a new entry and a compaction copies the live entries into a new
// slice, so a value returned by get stays valid and unchanged.
type blobMap struct {
	hash func(string) uint64
	idx  map[uint64]uint64 // hash of key -> offset of its entry
	over map[string]uint64 // keys whose hash another key holds in idx
	data []byte
	live int // bytes of data in entries still referenced
}

// entHdr is the header of an entry: key length and value length (uint32).
const entHdr = 8

// compactMin is the size of data below which no compaction is done.
const compactMin = 1 << 20

func newBlobMap() *blobMap {
	seed := maphash.MakeSeed()
	return &blobMap{
		hash: func(s string) uint64 { return maphash.String(seed, s) },
		idx:  make(map[uint64]uint64),
		over: make(map[string]uint64),
	}
}

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

func (m *blobMap) keyIs(off uint64, key string) bool {
	k, _ := m.entry(off)
	return string(k) == key
}

// find returns the offset of key's entry.
func (m *blobMap) find(key string) (uint64, bool) {
	if off, ok := m.idx[m.hash(key)]; ok && m.keyIs(off, key) {
		return off, true
	}
	if len(m.over) > 0 {
		off, ok := m.over[key]
		return off, ok
	}
	return 0, false
}

// get returns the value of key. The caller must not modify it.
func (m *blobMap) get(key string) ([]byte, bool) {
	off, ok := m.find(key)
	if !ok {
		return nil, false
	}
	_, v := m.entry(off)
	return v, true
}

func (m *blobMap) len() int { return len(m.idx) + len(m.over) }

// set stores val (copied) under key.
func (m *blobMap) set(key string, val []byte) {
	off := uint64(len(m.data))
	m.data = binary.LittleEndian.AppendUint32(m.data, uint32(len(key)))
	m.data = binary.LittleEndian.AppendUint32(m.data, uint32(len(val)))
	m.data = append(m.data, key...)
	m.data = append(m.data, val...)
	m.live += entHdr + len(key) + len(val)
	h := m.hash(key)
	old, taken := m.idx[h]
	switch {
	case taken && m.keyIs(old, key):
		m.live -= m.size(old)
		m.idx[h] = off
	case len(m.over) > 0 && m.inOver(key):
		m.live -= m.size(m.over[key])
		m.over[key] = off
	case taken:
		m.over[key] = off
	default:
		m.idx[h] = off
	}
	m.compact()
}

func (m *blobMap) inOver(key string) bool {
	_, ok := m.over[key]
	return ok
}

// del removes key and reports whether it was there.
func (m *blobMap) del(key string) bool {
	h := m.hash(key)
	if off, ok := m.idx[h]; ok && m.keyIs(off, key) {
		m.live -= m.size(off)
		delete(m.idx, h)
		return true
	}
	if off, ok := m.over[key]; ok {
		m.live -= m.size(off)
		delete(m.over, key)
		return true
	}
	return false
}

// addCount adds by to the counter stored under key (a 4-byte value,
// modified in place) and removes the key when the counter drops to zero
// or below.
func (m *blobMap) addCount(key string, by int) {
	off, ok := m.find(key)
	if !ok {
		if by > 0 {
			m.set(key, binary.LittleEndian.AppendUint32(nil, uint32(by)))
		}
		return
	}
	_, v := m.entry(off)
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
	for _, off := range m.idx {
		fn(m.entry(off))
	}
	for _, off := range m.over {
		fn(m.entry(off))
	}
}

// compact copies the live entries into a new slice once more than half
// of data is garbage.
func (m *blobMap) compact() {
	if len(m.data) < compactMin || len(m.data) < 2*m.live {
		return
	}
	nd := make([]byte, 0, m.live+m.live/4)
	move := func(off uint64) uint64 {
		n := uint64(len(nd))
		nd = append(nd, m.data[off:off+uint64(m.size(off))]...)
		return n
	}
	for h, off := range m.idx {
		m.idx[h] = move(off)
	}
	for k, off := range m.over {
		m.over[k] = move(off)
	}
	m.data = nd
}
