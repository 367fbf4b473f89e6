//go:build ignore

/* ILA datapath: SIR<->ILA destination rewriting at tc/tcx.
 *
 *   ila_task         ingress of a task-facing port (SIR->ILA, local delivery,
 *                    source validation, misses)
 *   ila_task_egress  egress of a task-facing port (ICMPv6 errors built by the
 *                    NVE's stack: quoted ILA destination mapped back)
 *   ila_uplink       ingress of the fabric-facing port (ILA->SIR, in-flight
 *                    re-translation, unknown identifiers)
 *   ila_router       ingress of an ILA-R port (full-table SIR->ILA)
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ila.h"

#define AF_INET6 10
#define ETH_HLEN_ 14
#define IP6_OFF ETH_HLEN_
#define IP6_DST_OFF (IP6_OFF + 24)
#define IP6_SRC_OFF (IP6_OFF + 8)
#define L4_MIN_OFF (IP6_OFF + 40)

#define NH_HOP 0
#define NH_TCP 6
#define NH_UDP 17
#define NH_ROUTING 43
#define NH_FRAGMENT 44
#define NH_AH 51
#define NH_ICMPV6 58
#define NH_NONE 59
#define NH_DSTOPTS 60

#define MAX_EXT 6
#define MISS_INTERVAL_NS 1000000000ULL

char LICENSE[] SEC("license") = "Dual MIT/GPL";

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

#define ILA_MAX_PORT_IFINDEX 65536
#define ILA_NH_TTL_JIFFIES 256 /* 0.25 s at HZ=1000, 1 s at HZ=250 */

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

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ila_misses SEC(".maps");

/* Force struct ila_miss_event into BTF for bpf2go. */
const struct ila_miss_event *unused_miss_event __attribute__((unused));

union addr {
	__u8 b[16];
	__be16 w[8];
	__be32 l[4];
	__u64 q[2];
};

struct pkt {
	__u32 l4_off;
	__u8 proto;
	__u8 has_l4;   /* first fragment (or unfragmented) and L4 header known */
	__u8 icmp_type;
	__u8 pad;
	union addr src;
	union addr dst;
};

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

static __always_inline __u16 add1(__u16 a, __u16 b)
{
	__u32 s = (__u32)a + b;
	return (__u16)(s + (s >> 16));
}

/* One's-complement sum of the four 16-bit words of a network-order __u64. */
static __always_inline __u16 sum64(__u64 v)
{
	union addr a;
	a.q[0] = v;
	__u16 s = add1(bpf_ntohs(a.w[0]), bpf_ntohs(a.w[1]));
	s = add1(s, bpf_ntohs(a.w[2]));
	return add1(s, bpf_ntohs(a.w[3]));
}

static __always_inline __u16 neutral_adjust(__u64 sir, __u64 loc, __u8 mode)
{
	__u16 d = add1(sum64(sir), (__u16)~sum64(loc));
	if (mode == ILA_CSUM_NEUTRAL_MAP)
		d = add1(d, 0xefff);
	return d;
}

/* sir_to_ila turns a SIR address into the ILA address for loc. */
static __always_inline void sir_to_ila(union addr *a, __u64 loc, __u8 mode)
{
	if (mode == ILA_CSUM_NEUTRAL_MAP || mode == ILA_CSUM_NEUTRAL_MAP_AUTO) {
		__u16 o = add1(bpf_ntohs(a->w[7]), neutral_adjust(a->q[0], loc, mode));
		a->w[7] = bpf_htons(o);
		if (mode == ILA_CSUM_NEUTRAL_MAP)
			a->b[8] |= 0x10;
	}
	a->q[0] = loc;
}

/* ila_to_sir turns an ILA address back into the SIR address of prefix sir. */
static __always_inline void ila_to_sir(union addr *a, __u64 sir, __u8 mode)
{
	if (mode == ILA_CSUM_NEUTRAL_MAP_AUTO || (mode == ILA_CSUM_NEUTRAL_MAP && (a->b[8] & 0x10))) {
		__u16 o = add1(bpf_ntohs(a->w[7]), (__u16)~neutral_adjust(sir, a->q[0], mode));
		a->w[7] = bpf_htons(o);
		if (mode == ILA_CSUM_NEUTRAL_MAP)
			a->b[8] &= ~0x10;
	}
	a->q[0] = sir;
}

/* sir_to_ila_ent is sir_to_ila(a, e->loc, e->csum) for a destination whose
 * prefix is e->sir, with the neutral adjustment taken from the entry. */
static __always_inline void sir_to_ila_ent(union addr *a, struct ila_map_ent *e)
{
	__u8 mode = e->csum;
	if (mode == ILA_CSUM_NEUTRAL_MAP || mode == ILA_CSUM_NEUTRAL_MAP_AUTO) {
		a->w[7] = bpf_htons(add1(bpf_ntohs(a->w[7]), e->adj));
		if (mode == ILA_CSUM_NEUTRAL_MAP)
			a->b[8] |= 0x10;
	}
	a->q[0] = e->loc;
}

/* lookup_mapping returns the mapping of k (from the per-CPU cache, or from
 * ila_mappings and then cached), NULL when there is none. The entry stays
 * valid until the next lookup_mapping on this CPU. */
static __always_inline __u64 table_gen(void)
{
	__u32 zero = 0;
	__u64 *g = bpf_map_lookup_elem(&ila_gen, &zero);
	return g ? *(volatile __u64 *)g : 0;
}

static __always_inline struct ila_map_ent *lookup_mapping(struct ila_key *k)
{
	__u64 gen = table_gen();
	__u32 slot = (__u32)(((k->sir ^ k->id) * 0x9E3779B97F4A7C15ULL) >> (64 - ILA_MAP_CACHE_LOG));
	struct ila_map_ent *e = bpf_map_lookup_elem(&ila_map_cache, &slot);
	if (!e)
		return NULL; /* unreachable: slot < max_entries */
	if (gen && e->gen == gen && e->sir == k->sir && e->id == k->id)
		return e;
	struct ila_map_val *m = bpf_map_lookup_elem(&ila_mappings, k);
	if (!m)
		return NULL;
	__u64 loc = m->loc;
	__u8 mode = m->csum;
	e->sir = k->sir;
	e->id = k->id;
	e->loc = loc;
	e->csum = mode;
	e->flags = m->flags;
	e->adj = 0;
	if (mode == ILA_CSUM_NEUTRAL_MAP || mode == ILA_CSUM_NEUTRAL_MAP_AUTO)
		e->adj = neutral_adjust(k->sir, loc, mode);
	e->gen = gen;
	return e;
}

/* lookup_uplink returns the uplink's view of a packet from source prefix
 * src_hi to dst (from the per-CPU cache, or from ila_locspace, ila_mylocs
 * and ila_locals and then cached); NULL only if the slot cannot be had
 * (unreachable). Valid until the next lookup_uplink on this CPU. */
static __always_inline struct ila_up_ent *lookup_uplink(__u64 src_hi, union addr *dst)
{
	__u64 gen = table_gen();
	__u64 dst_hi = dst->q[0], dst_id = dst->q[1];
	__u32 slot = (__u32)(((src_hi ^ dst_hi ^ (dst_id * 3)) * 0x9E3779B97F4A7C15ULL) >> (64 - ILA_UP_CACHE_LOG));
	struct ila_up_ent *e = bpf_map_lookup_elem(&ila_up_cache, &slot);
	if (!e)
		return NULL;
	if (gen && e->gen == gen && e->src_hi == src_hi && e->dst_hi == dst_hi && e->dst_id == dst_id)
		return e;
	e->src_hi = src_hi;
	e->dst_hi = dst_hi;
	e->dst_id = dst_id;
	e->flags = 0;
	if (bpf_map_lookup_elem(&ila_locspace, &src_hi)) {
		e->flags = ILA_UP_SRC_LOCSPACE;
	} else {
		struct ila_myloc_val *ml = bpf_map_lookup_elem(&ila_mylocs, &dst_hi);
		if (ml) {
			e->flags = ILA_UP_MYLOC;
			e->ml_sir = ml->sir;
			e->ml_csum = ml->csum;
			union addr sir = *dst;
			ila_to_sir(&sir, ml->sir, ml->csum);
			struct ila_key k = {.sir = sir.q[0], .id = sir.q[1]};
			struct ila_local_val *lv = bpf_map_lookup_elem(&ila_locals, &k);
			if (lv) {
				e->flags |= ILA_UP_LOCAL;
				e->lv = *lv;
			}
		}
	}
	e->gen = gen;
	return e;
}

/* csum_diff16 is bpf_csum_diff(from, 16, to, 16, 0) without the helper
 * call: the one's-complement sum of ~from and to, folded to 32 bits. */
static __always_inline __s64 csum_diff16(const __be32 *from, const __be32 *to)
{
	__u64 s = 0;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		s += (__u32)~from[i];
		s += to[i];
	}
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	return (__s64)(__u32)s;
}

static __always_inline int csum_field(__u8 proto)
{
	switch (proto) {
	case NH_TCP:
		return 16;
	case NH_UDP:
		return 6;
	case NH_ICMPV6:
		return 2;
	}
	return -1;
}

static __always_inline int is_ext(__u8 nh)
{
	return nh == NH_HOP || nh == NH_ROUTING || nh == NH_FRAGMENT || nh == NH_DSTOPTS || nh == NH_AH;
}

/* parse returns 0 for a non-IPv6 frame, 1 for IPv6 (p filled), -1 when
 * malformed. Extension headers are walked with bpf_skb_load_bytes. */
static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (data + L4_MIN_OFF > data_end) {
		if (skb->protocol != bpf_htons(ETH_P_IPV6))
			return 0;
		if (skb->len < L4_MIN_OFF || bpf_skb_pull_data(skb, L4_MIN_OFF) < 0)
			return -1;
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		if (data + L4_MIN_OFF > data_end)
			return -1;
	}
	struct ethhdr *eth = data;
	if (eth->h_proto != bpf_htons(ETH_P_IPV6))
		return 0;
	struct ipv6hdr *ip6 = data + IP6_OFF;
	if (ip6->version != 6)
		return -1;
	__builtin_memcpy(p->src.b, &ip6->saddr, 16);
	__builtin_memcpy(p->dst.b, &ip6->daddr, 16);

	__u8 nh = ip6->nexthdr;
	__u32 off = L4_MIN_OFF;
	__u8 first = 1;
	if (is_ext(nh)) {
#pragma unroll
		for (int i = 0; i < MAX_EXT; i++) {
			__u8 h[4];
			if (!is_ext(nh))
				break;
			if (bpf_skb_load_bytes(skb, off, h, 4) < 0)
				return -1;
			if (nh == NH_FRAGMENT) {
				if (((h[2] << 8) | h[3]) & 0xfff8)
					first = 0;
				off += 8;
			} else if (nh == NH_AH) {
				off += ((__u32)h[1] + 2) * 4;
			} else {
				off += ((__u32)h[1] + 1) * 8;
			}
			nh = h[0];
		}
	}
	p->proto = nh;
	p->l4_off = off;
	p->has_l4 = first && !is_ext(nh) && csum_field(nh) >= 0;
	p->icmp_type = 0;
	if (nh == NH_ICMPV6 && first) {
		if (bpf_skb_load_bytes(skb, off, &p->icmp_type, 1) < 0)
			return -1;
	}
	return 1;
}

static __always_inline int is_nd(struct pkt *p)
{
	return p->proto == NH_ICMPV6 && p->icmp_type >= 133 && p->icmp_type <= 137;
}

static __always_inline int is_icmp_error(struct pkt *p)
{
	return p->proto == NH_ICMPV6 && p->icmp_type >= 1 && p->icmp_type <= 4;
}

static __always_inline int is_link_local(union addr *a)
{
	return a->b[0] == 0xfe && (a->b[1] & 0xc0) == 0x80;
}

static __always_inline int is_multicast(union addr *a)
{
	return a->b[0] == 0xff;
}

/* rewrite_dst writes the new destination and fixes the transport checksum
 * for adjust-transport (BPF_F_PSEUDO_HDR also handles CHECKSUM_PARTIAL).
 * The neutral modes and no-action leave L4 alone. */
static __always_inline int rewrite_dst(struct __sk_buff *skb, struct pkt *p, union addr *new, __u8 mode)
{
	if (mode == ILA_CSUM_ADJUST_TRANSPORT) {
		if (p->has_l4) {
			int f = csum_field(p->proto);
			__s64 diff = csum_diff16(p->dst.l, new->l);
			__u64 flags = BPF_F_PSEUDO_HDR;
			if (p->proto == NH_UDP)
				flags |= BPF_F_MARK_MANGLED_0;
			if (f < 0 || diff < 0 || bpf_l4_csum_replace(skb, p->l4_off + f, 0, diff, flags) < 0)
				return -1;
		} else if (is_ext(p->proto)) {
			/* Too many extension headers to find L4: refuse rather
			 * than forward a packet with a checksum we cannot fix. */
			return -1;
		}
	}
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + IP6_OFF;
	if ((void *)(ip6 + 1) > data_end)
		return -1;
	__builtin_memcpy(&ip6->daddr, new->b, 16);
	p->dst = *new;
	return 0;
}

static __always_inline int dec_hop_limit(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + IP6_OFF;
	if ((void *)(ip6 + 1) > data_end)
		return -1;
	if (ip6->hop_limit <= 1)
		return -1;
	ip6->hop_limit--;
	return 0;
}

/* forward sends a translated packet on by FIB lookup + redirect, or hands it
 * to the stack when the FIB says something the stack must handle (no
 * route, MTU, hop limit: the stack sends the ICMPv6 error). A successful
 * lookup is cached per destination /64 (locators are /64s) for
 * ILA_NH_TTL_JIFFIES; a packet over the cached MTU takes the full path. */
static __always_inline int forward(struct __sk_buff *skb, struct pkt *p, struct ila_counters *st)
{
	__u64 dst64 = p->dst.q[0];
	__u64 now = bpf_jiffies64();
	__u32 slot = (__u32)((dst64 * 0x9E3779B97F4A7C15ULL) >> (64 - ILA_NH_SLOTS_LOG));
	struct ila_nh *c = bpf_map_lookup_elem(&ila_nh_cache, &slot);
	if (c && c->dst64 == dst64 && now < c->expires && (skb->len - ETH_HLEN_ <= c->mtu || skb->gso_size)) {
		void *data = (void *)(long)skb->data;
		void *data_end = (void *)(long)skb->data_end;
		struct ethhdr *eth = data;
		struct ipv6hdr *ip6 = data + IP6_OFF;
		if ((void *)(ip6 + 1) > data_end || ip6->hop_limit <= 1)
			goto stack;
		ip6->hop_limit--;
		__builtin_memcpy(eth->h_dest, c->dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, c->smac, ETH_ALEN);
		COUNT(STAT_NH_CACHE_HIT);
		return bpf_redirect(c->ifindex, 0);
	}

	struct bpf_fib_lookup fib = {};
	fib.family = AF_INET6;
	fib.l4_protocol = p->proto;
	fib.tot_len = 0; /* let the kernel check the skb and report the MTU */
	fib.ifindex = skb->ingress_ifindex;
	__builtin_memcpy(fib.ipv6_src, p->src.l, 16);
	__builtin_memcpy(fib.ipv6_dst, p->dst.l, 16);

	long rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		struct ila_nh nh = {.dst64 = dst64, .expires = now + ILA_NH_TTL_JIFFIES, .ifindex = fib.ifindex, .mtu = fib.mtu_result};
		__builtin_memcpy(nh.dmac, fib.dmac, ETH_ALEN);
		__builtin_memcpy(nh.smac, fib.smac, ETH_ALEN);
		bpf_map_update_elem(&ila_nh_cache, &slot, &nh, BPF_ANY);
		if (dec_hop_limit(skb) < 0)
			goto stack;
		void *data = (void *)(long)skb->data;
		void *data_end = (void *)(long)skb->data_end;
		struct ethhdr *eth = data;
		if ((void *)(eth + 1) > data_end)
			goto stack;
		__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
		COUNT(STAT_FIB_REDIRECT);
		return bpf_redirect(fib.ifindex, 0);
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		if (dec_hop_limit(skb) < 0)
			goto stack;
		struct bpf_redir_neigh nh = {.nh_family = AF_INET6};
		__builtin_memcpy(nh.ipv6_nh, fib.ipv6_dst, 16);
		COUNT(STAT_FIB_REDIRECT);
		return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
stack:
	COUNT(STAT_FIB_STACK);
	return TC_ACT_OK;
}

/* deliver hands a packet whose destination is a local task's SIR address
 * to that task's port. */
static __always_inline int deliver(struct __sk_buff *skb, struct pkt *p, struct ila_local_val *lv, struct ila_config *cfg)
{
	if (dec_hop_limit(skb) < 0)
		return TC_ACT_OK;
	if (lv->has_mac && cfg) {
		void *data = (void *)(long)skb->data;
		void *data_end = (void *)(long)skb->data_end;
		struct ethhdr *eth = data;
		if ((void *)(eth + 1) > data_end)
			return TC_ACT_SHOT;
		__builtin_memcpy(eth->h_dest, lv->mac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, cfg->gw_mac, ETH_ALEN);
		return bpf_redirect(lv->ifindex, 0);
	}
	struct bpf_redir_neigh nh = {.nh_family = AF_INET6};
	__builtin_memcpy(nh.ipv6_nh, p->dst.l, 16);
	return bpf_redirect_neigh(lv->ifindex, &nh, sizeof(nh), 0);
}

static __always_inline int report_miss(union addr *dst, struct ila_counters *st)
{
	struct ila_key k = {.sir = dst->q[0], .id = dst->q[1]};
	__u64 now = bpf_ktime_get_ns();
	__u64 *last = bpf_map_lookup_elem(&ila_miss_rl, &k);
	if (last && now - *last < MISS_INTERVAL_NS) {
		COUNT(STAT_MISS_RATELIMITED);
		return 0;
	}
	bpf_map_update_elem(&ila_miss_rl, &k, &now, BPF_ANY);
	struct ila_miss_event *e = bpf_ringbuf_reserve(&ila_misses, sizeof(*e), 0);
	if (!e) {
		COUNT(STAT_MISS_RINGBUF_FULL);
		return 1;
	}
	e->sir = k.sir;
	e->id = k.id;
	bpf_ringbuf_submit(e, 0);
	COUNT(STAT_MISS_REPORTED);
	return 1;
}

#define ICMP_QUOTE_MAX (1280 - 48)
#define CSUM_CHUNK 256

struct scratch {
	__u8 b[CSUM_CHUNK];
};

/* Per-CPU scratch buffer for checksumming (too big for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct scratch);
	__uint(max_entries, 1);
} ila_scratch SEC(".maps");

/* icmp_unreach turns the packet into an ICMPv6 destination unreachable,
 * code 3 (address unreachable), to its source, quoting as much of it as
 * fits in 1280 bytes, and forwards it. Returns -1 if it could not (the
 * caller drops). The source address is the one the FIB picks for reaching
 * the original sender. */
static __always_inline int icmp_unreach(struct __sk_buff *skb, struct pkt *p, struct ila_counters *st)
{
	/* The sender is a SIR address: the error travels to its ILA address
	 * when the table knows it (the router's own routes for the SIR prefix
	 * lead back to itself). */
	union addr src, dst = p->src, wire = p->src;
	__u8 mode = ILA_CSUM_NO_ACTION;
	int xlat = 0;
	struct ila_key k = {.sir = dst.q[0], .id = dst.q[1]};
	struct ila_map_val *m = bpf_map_lookup_elem(&ila_mappings, &k);
	if (m) {
		mode = m->csum;
		sir_to_ila(&wire, m->loc, mode);
		xlat = 1;
	}
	struct bpf_fib_lookup fib = {};
	fib.family = AF_INET6;
	fib.ifindex = skb->ingress_ifindex;
	__builtin_memcpy(fib.ipv6_dst, wire.l, 16);
	if (bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_SRC | BPF_FIB_LOOKUP_SKIP_NEIGH) != BPF_FIB_LKUP_RET_SUCCESS)
		return -1;
	__builtin_memcpy(src.l, fib.ipv6_src, 16);

	__u32 ql = skb->len - ETH_HLEN_;
	if (ql > ICMP_QUOTE_MAX) {
		ql = ICMP_QUOTE_MAX;
		if (bpf_skb_change_tail(skb, ETH_HLEN_ + ql, 0) < 0)
			return -1;
	}
	if (bpf_skb_adjust_room(skb, 48, BPF_ADJ_ROOM_MAC, 0) < 0)
		return -1;

	/* Sum of the quote, in chunks (bpf_csum_diff takes at most 512 bytes
	 * and multiples of 4; the last chunk is zero padded). */
	__u32 zero = 0;
	struct scratch *sc = bpf_map_lookup_elem(&ila_scratch, &zero);
	if (!sc)
		return -1;
	__u8 *buf = sc->b;
	__s64 sum = 0;
	for (int i = 0; i < (ICMP_QUOTE_MAX + CSUM_CHUNK - 1) / CSUM_CHUNK; i++) {
		__u32 off = i * CSUM_CHUNK;
		if (off >= ql)
			break;
		__u32 n = ql - off;
		if (n > CSUM_CHUNK)
			n = CSUM_CHUNK;
		/* n is in [1, CSUM_CHUNK]; the identities below make that
		 * visible to the verifier (asm keeps clang from folding them). */
		asm volatile("%0 += -1; %0 &= 0xff; %0 += 1" : "+r"(n));
		__builtin_memset(buf, 0, CSUM_CHUNK);
		if (bpf_skb_load_bytes(skb, ETH_HLEN_ + 48 + off, buf, n) < 0)
			return -1;
		__u32 padded = (n + 3) >> 2; /* words, in [1, CSUM_CHUNK/4] */
		asm volatile("%0 += -1; %0 &= 0x3f; %0 += 1; %0 <<= 2" : "+r"(padded));
		sum = bpf_csum_diff(0, 0, (__be32 *)buf, padded, (__u32)sum);
		if (sum < 0)
			return -1;
	}
	struct {
		struct ipv6hdr ip6;
		__u8 type, code;
		__be16 csum;
		__be32 unused;
	} h = {};
	h.ip6.version = 6;
	h.ip6.payload_len = bpf_htons(8 + ql);
	h.ip6.nexthdr = NH_ICMPV6;
	h.ip6.hop_limit = 64;
	__builtin_memcpy(&h.ip6.saddr, src.b, 16);
	__builtin_memcpy(&h.ip6.daddr, dst.b, 16);
	h.type = 1;
	h.code = 3;
	/* pseudo-header: addresses, upper-layer length, next header */
	__be32 ph[10] = {};
	__builtin_memcpy(ph, src.l, 16);
	__builtin_memcpy(&ph[4], dst.l, 16);
	ph[8] = bpf_htonl(8 + ql);
	ph[9] = bpf_htonl(NH_ICMPV6);
	sum = bpf_csum_diff(0, 0, ph, sizeof(ph), (__u32)sum);
	if (sum < 0)
		return -1;
	sum = bpf_csum_diff(0, 0, (__be32 *)&h.type, 8, (__u32)sum);
	if (sum < 0)
		return -1;
	__u32 s32 = (__u32)sum;
	s32 = (s32 & 0xffff) + (s32 >> 16);
	s32 = (s32 & 0xffff) + (s32 >> 16);
	h.csum = (__u16)~s32;
	if (bpf_skb_store_bytes(skb, ETH_HLEN_, &h, sizeof(h), 0) < 0)
		return -1;
	p->src = src;
	p->dst = dst;
	p->proto = NH_ICMPV6;
	p->l4_off = L4_MIN_OFF;
	p->has_l4 = 1;
	if (xlat && rewrite_dst(skb, p, &wire, mode) < 0)
		return -1;
	COUNT(STAT_ROUTER_ICMP_SENT);
	return forward(skb, p, st);
}

/* fix_icmp_error maps the quoted packet's ILA destination back to its SIR
 * address and patches the ICMPv6 checksum (the quote is payload: no
 * pseudo-header). Returns 0 when nothing needed doing, 1 when mapped, -1
 * on helper failure. */
static __always_inline int fix_icmp_error(struct __sk_buff *skb, struct pkt *p, struct ila_counters *st)
{
	__u32 qoff = p->l4_off + 8 + 24; /* quoted IPv6 destination */
	union addr old, new;
	if (bpf_skb_load_bytes(skb, qoff, old.b, 16) < 0)
		return 0; /* quote too short to carry a destination */
	__u64 loc = old.q[0];
	struct ila_locspace_val *ls = bpf_map_lookup_elem(&ila_locspace, &loc);
	if (!ls)
		return 0;
	new = old;
	ila_to_sir(&new, ls->sir, ls->csum);
	__s64 diff = csum_diff16(old.l, new.l);
	if (diff < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, qoff, new.b, 16, 0) < 0)
		return -1;
	if (bpf_l4_csum_replace(skb, p->l4_off + 2, 0, diff, 0) < 0)
		return -1;
	if (ls->csum == ILA_CSUM_ADJUST_TRANSPORT) {
		/* The quoted transport checksum was patched for the ILA
		 * address on the way out: patch it back (if the quote holds
		 * it) so the quote is what the task sent. */
		__u32 ioff = p->l4_off + 8;
		__u8 inh;
		if (bpf_skb_load_bytes(skb, ioff + 6, &inh, 1) == 0) {
			int f = csum_field(inh);
			__u16 oc;
			if (f >= 0 && bpf_skb_load_bytes(skb, ioff + 40 + f, &oc, 2) == 0 && !(inh == NH_UDP && oc == 0)) {
				__u32 d = (__u32)diff;
				d = (d & 0xffff) + (d >> 16);
				d = (d & 0xffff) + (d >> 16);
				__u16 nc = ~add1(~oc, (__u16)d);
				if (inh == NH_UDP && nc == 0)
					nc = 0xffff;
				if (bpf_skb_store_bytes(skb, ioff + 40 + f, &nc, 2, 0) < 0)
					return -1;
				if (bpf_l4_csum_replace(skb, p->l4_off + 2, oc, nc, 2) < 0)
					return -1;
			}
		}
	}
	COUNT(STAT_ICMP_ERROR_MAPPED);
	return 1;
}

static __always_inline struct ila_config *config(void)
{
	__u32 k = 0;
	return bpf_map_lookup_elem(&ila_cfg, &k);
}

SEC("tc")
int ila_task(struct __sk_buff *skb)
{
	struct pkt p;
	struct ila_counters *st = stats();
	COUNT(STAT_RX_TASK);
	int r = parse(skb, &p);
	if (r == 0) {
		COUNT(STAT_PASS_NON_IPV6);
		return TC_ACT_OK;
	}
	if (r < 0) {
		COUNT(STAT_DROP_MALFORMED);
		return TC_ACT_SHOT;
	}
	/* Neighbour discovery goes to the NVE's stack / ND emulator untouched,
	 * from any source; but a unicast one to a SIR address (a task's NUD
	 * probe of a neighbour) has been answered by the emulator, a tap that
	 * runs before tc, and the stack would route it on, off the link. */
	if (is_nd(&p)) {
		__u64 ndhi = p.dst.q[0];
		if (!is_multicast(&p.dst) && !is_link_local(&p.dst) && bpf_map_lookup_elem(&ila_domains, &ndhi)) {
			COUNT(STAT_DROP_ND_SIR);
			return TC_ACT_SHOT;
		}
		COUNT(STAT_PASS_ND);
		return TC_ACT_OK;
	}
	if (is_multicast(&p.dst)) {
		COUNT(STAT_PASS_MULTICAST);
		return TC_ACT_OK;
	}
	if (is_link_local(&p.src)) {
		if (is_link_local(&p.dst)) {
			COUNT(STAT_PASS_LINK_LOCAL);
			return TC_ACT_OK;
		}
		COUNT(STAT_DROP_SPOOFED_SOURCE);
		return TC_ACT_SHOT;
	}

	/* Anti-spoofing: the source must be a SIR address bound to this port. */
	__u32 in = skb->ingress_ifindex;
	struct ila_port *port = bpf_map_lookup_elem(&ila_ports, &in);
	if (!port || port->sir != p.src.q[0] || port->id != p.src.q[1]) {
		struct ila_key sk = {.sir = p.src.q[0], .id = p.src.q[1]};
		struct ila_local_val *src = bpf_map_lookup_elem(&ila_locals, &sk);
		if (!src || src->ifindex != in) {
			COUNT(STAT_DROP_SPOOFED_SOURCE);
			return TC_ACT_SHOT;
		}
	}

	struct ila_key dk = {.sir = p.dst.q[0], .id = p.dst.q[1]};
	struct ila_map_ent *m = lookup_mapping(&dk);
	if (m) {
		__u8 mode = m->csum;
		if (m->flags & ILA_MAP_F_OWN_LOC) {
			struct ila_local_val *lv = bpf_map_lookup_elem(&ila_locals, &dk);
			if (lv) {
				COUNT(STAT_LOCAL_DELIVERED);
				return deliver(skb, &p, lv, config());
			}
		}
		union addr n = p.dst;
		sir_to_ila_ent(&n, m);
		if (rewrite_dst(skb, &p, &n, mode) < 0) {
			COUNT(STAT_DROP_ERROR);
			return TC_ACT_SHOT;
		}
		COUNT(STAT_TRANSLATED);
		return forward(skb, &p, st);
	}
	struct ila_local_val *lv = bpf_map_lookup_elem(&ila_locals, &dk);
	if (lv) {
		COUNT(STAT_LOCAL_DELIVERED);
		return deliver(skb, &p, lv, config());
	}
	__u64 hi = p.dst.q[0];
	if (bpf_map_lookup_elem(&ila_domains, &hi)) {
		COUNT(STAT_MISS);
		report_miss(&p.dst, st);
		struct ila_config *cfg = config();
		if (cfg && (cfg->flags & ILA_F_MISS_DROP)) {
			COUNT(STAT_DROP_MISS);
			return TC_ACT_SHOT;
		}
		COUNT(STAT_PASS_MISS);
		return TC_ACT_OK;
	}
	if (bpf_map_lookup_elem(&ila_locspace, &hi)) {
		COUNT(STAT_DROP_LOCATOR_DST);
		return TC_ACT_SHOT;
	}
	COUNT(STAT_PASS_NOT_SIR);
	return TC_ACT_OK;
}

SEC("tc")
int ila_task_egress(struct __sk_buff *skb)
{
	struct pkt p;
	struct ila_counters *st = stats();
	if (parse(skb, &p) <= 0 || !is_icmp_error(&p))
		return TC_ACT_OK;
	if (fix_icmp_error(skb, &p, st) < 0) {
		COUNT(STAT_DROP_ERROR);
		return TC_ACT_SHOT;
	}
	return TC_ACT_OK;
}

SEC("tc")
int ila_uplink(struct __sk_buff *skb)
{
	struct pkt p;
	struct ila_counters *st = stats();
	COUNT(STAT_RX_UPLINK);
	int r = parse(skb, &p);
	if (r == 0) {
		COUNT(STAT_PASS_NON_IPV6);
		return TC_ACT_OK;
	}
	if (r < 0) {
		COUNT(STAT_DROP_MALFORMED);
		return TC_ACT_SHOT;
	}
	if (is_nd(&p)) {
		COUNT(STAT_PASS_ND);
		return TC_ACT_OK;
	}
	struct ila_up_ent *ue = lookup_uplink(p.src.q[0], &p.dst);
	if (!ue)
		goto err; /* unreachable */
	if (ue->flags & ILA_UP_SRC_LOCSPACE) {
		COUNT(STAT_DROP_LOCATOR_SRC);
		return TC_ACT_SHOT;
	}
	if (!(ue->flags & ILA_UP_MYLOC)) {
		COUNT(STAT_PASS_NOT_OURS);
		return TC_ACT_OK;
	}
	__u8 ml_csum = ue->ml_csum;
	union addr sir = p.dst;
	ila_to_sir(&sir, ue->ml_sir, ml_csum);

	if (ue->flags & ILA_UP_LOCAL) {
		if (is_icmp_error(&p) && fix_icmp_error(skb, &p, st) < 0)
			goto err;
		if (rewrite_dst(skb, &p, &sir, ml_csum) < 0)
			goto err;
		COUNT(STAT_DELIVERED);
		return deliver(skb, &p, &ue->lv, config());
	}
	struct ila_key k = {.sir = sir.q[0], .id = sir.q[1]};
	struct ila_inflight_val *fl = bpf_map_lookup_elem(&ila_inflight, &k);
	if (fl && bpf_ktime_get_ns() < fl->deadline_ns) {
		union addr n = sir;
		__u8 mode = fl->csum;
		sir_to_ila(&n, fl->loc, mode);
		if (ml_csum == ILA_CSUM_ADJUST_TRANSPORT || mode == ILA_CSUM_ADJUST_TRANSPORT) {
			/* Keep the wire checksum what the new locator's
			 * receiver expects: patch from the current address. */
			if (rewrite_dst(skb, &p, &n, ILA_CSUM_ADJUST_TRANSPORT) < 0)
				goto err;
			if (ml_csum != mode) {
				/* One side adjusts, the other does not: the
				 * checksum must be relative to the SIR (for
				 * the no-adjust side) or the ILA address. */
				union addr base = (ml_csum == ILA_CSUM_ADJUST_TRANSPORT) ? sir : n;
				union addr from = (ml_csum == ILA_CSUM_ADJUST_TRANSPORT) ? n : sir;
				if (p.has_l4) {
					int f = csum_field(p.proto);
					__s64 d = csum_diff16(from.l, base.l);
					__u64 fl2 = BPF_F_PSEUDO_HDR | (p.proto == NH_UDP ? BPF_F_MARK_MANGLED_0 : 0);
					if (f < 0 || d < 0 || bpf_l4_csum_replace(skb, p.l4_off + f, 0, d, fl2) < 0)
						goto err;
				}
			}
		} else if (rewrite_dst(skb, &p, &n, mode) < 0) {
			goto err;
		}
		COUNT(STAT_INFLIGHT_FORWARDED);
		return forward(skb, &p, st);
	}
	struct ila_config *cfg = config();
	if (cfg && (cfg->flags & ILA_F_UNKNOWN_PASS)) {
		COUNT(STAT_PASS_UNKNOWN);
		return TC_ACT_OK;
	}
	COUNT(STAT_DROP_UNKNOWN);
	return TC_ACT_SHOT;
err:
	COUNT(STAT_DROP_ERROR);
	return TC_ACT_SHOT;
}

SEC("tc")
int ila_router(struct __sk_buff *skb)
{
	struct pkt p;
	struct ila_counters *st = stats();
	COUNT(STAT_RX_ROUTER);
	int r = parse(skb, &p);
	if (r == 0) {
		COUNT(STAT_PASS_NON_IPV6);
		return TC_ACT_OK;
	}
	if (r < 0) {
		COUNT(STAT_DROP_MALFORMED);
		return TC_ACT_SHOT;
	}
	if (is_nd(&p)) {
		COUNT(STAT_PASS_ND);
		return TC_ACT_OK;
	}
	struct ila_key dk = {.sir = p.dst.q[0], .id = p.dst.q[1]};
	struct ila_map_ent *m = lookup_mapping(&dk);
	if (m) {
		union addr n = p.dst;
		__u8 mode = m->csum;
		sir_to_ila_ent(&n, m);
		if (rewrite_dst(skb, &p, &n, mode) < 0) {
			COUNT(STAT_DROP_ERROR);
			return TC_ACT_SHOT;
		}
		COUNT(STAT_ROUTER_TRANSLATED);
		return forward(skb, &p, st);
	}
	__u64 hi = p.dst.q[0];
	if (bpf_map_lookup_elem(&ila_domains, &hi)) {
		COUNT(STAT_DROP_ROUTER_MISS);
		/* At most one ICMPv6 error per identifier per second (the miss
		 * report's rate limit), never about an ICMPv6 error. */
		if (report_miss(&p.dst, st) && !is_icmp_error(&p) && !is_multicast(&p.src)) {
			int r = icmp_unreach(skb, &p, st);
			if (r >= 0)
				return r;
		}
		return TC_ACT_SHOT;
	}
	COUNT(STAT_PASS_NOT_SIR);
	return TC_ACT_OK;
}

SEC("tc")
int ila_empty(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}
