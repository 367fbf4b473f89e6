/* The maps: tables written by Go (pinned), per-CPU caches, counters, the
 * miss ring buffer. Go sizes and pins them (datapath_linux.go Open). */
#ifndef ILA_LIB_MAPS_H
#define ILA_LIB_MAPS_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct ila_key);
	__type(value, struct ila_map_val);
	__uint(max_entries, 1 << 20);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ila_mappings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct ila_key);
	__type(value, struct ila_local_val);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ila_locals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct ila_key);
	__type(value, struct ila_inflight_val);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ila_inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, struct ila_myloc_val);
	__uint(max_entries, 256);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ila_mylocs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, struct ila_domain_val);
	__uint(max_entries, 4096);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ila_domains SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, struct ila_locspace_val);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ila_locspace SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ila_config);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ila_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ila_port);
	__uint(max_entries, ILA_MAX_PORT_IFINDEX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ila_ports SEC(".maps");

/* Direct-mapped next-hop cache indexed by a hash of the destination /64,
 * tagged with it. Not pinned: rebuilt by the first packets after a restart. */
#define ILA_NH_SLOTS_LOG 12
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ila_nh);
	__uint(max_entries, 1 << ILA_NH_SLOTS_LOG);
} ila_nh_cache SEC(".maps");

/* Per-CPU direct-mapped caches in front of the hash tables of the hot
 * paths, indexed by a hash of the key and tagged with it. A hash-map lookup
 * is a kernel function call (and a memcmp); array lookups are inlined by
 * the verifier, so a cache hit costs a few loads. An entry is valid only
 * while its gen equals ila_gen, which Go replaces after every change to a
 * table (the value is read before the hash lookups that fill an entry, so
 * a fill that raced with a change carries the old generation). Per-CPU: no
 * torn entries from another CPU's fill. Not pinned: rebuilt after a
 * restart.
 *
 * ila_map_cache: ila_mappings (task and ILA-R translation). */
#define ILA_MAP_CACHE_LOG 12
struct ila_map_ent {
	__u64 sir;
	__u64 id;
	__u64 gen;
	__u64 loc;
	__u16 adj; /* neutral modes: neutral_adjust(sir, loc, csum) */
	__u8 csum;
	__u8 flags;
	__u8 pad[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct ila_map_ent);
	__uint(max_entries, 1 << ILA_MAP_CACHE_LOG);
} ila_map_cache SEC(".maps");

/* ila_up_cache: the uplink's three lookups for a (source prefix,
 * destination) pair: ila_locspace for the source, ila_mylocs for the
 * destination locator, ila_locals for the SIR address it maps back to. */
#define ILA_UP_CACHE_LOG 11
#define ILA_UP_SRC_LOCSPACE 1 /* source prefix is locator space: drop */
#define ILA_UP_MYLOC 2        /* destination locator is ours (ml_*) */
#define ILA_UP_LOCAL 4        /* ...and its SIR address is bound here (lv) */
struct ila_up_ent {
	__u64 src_hi;
	__u64 dst_hi;
	__u64 dst_id;
	__u64 gen;
	__u64 ml_sir;
	struct ila_local_val lv;
	__u8 ml_csum;
	__u8 flags;
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct ila_up_ent);
	__uint(max_entries, 1 << ILA_UP_CACHE_LOG);
} ila_up_cache SEC(".maps");

/* Generation of the tables' contents (0: caches disabled). Pinned: every
 * program generation sharing the pinned tables sees the changes. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ila_gen SEC(".maps");

/* One per-CPU struct of counters: a single lookup per packet. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, enum ila_stat); /* 4 bytes; keeps the enum in BTF for bpf2go (only key 0 is used) */
	__type(value, struct ila_counters);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ila_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ila_key);
	__type(value, __u64);
	__uint(max_entries, 16384);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ila_miss_rl SEC(".maps");

/* Last ICMPv6 error sent about a suspended task, per SIR address (the
 * NVE's rate limit; not pinned). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ila_key);
	__type(value, __u64);
	__uint(max_entries, 4096);
} ila_icmp_rl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ila_misses SEC(".maps");

static __always_inline struct ila_counters *stats(void)
{
	__u32 k = 0;
	return bpf_map_lookup_elem(&ila_stats, &k);
}

/* COUNT needs a struct ila_counters *st in scope. */
#define COUNT(s)                   \
	do {                       \
		if (st)            \
			st->v[s]++; \
	} while (0)

static __always_inline struct ila_config *config(void)
{
	__u32 k = 0;
	return bpf_map_lookup_elem(&ila_cfg, &k);
}

#endif
