/* ICMPv6: address-unreachable errors sent by the ILA-R, and the quoted
 * destination of errors to tasks mapped back to the SIR address. */
#ifndef ILA_LIB_ICMP6_H
#define ILA_LIB_ICMP6_H

#include "addr.h"
#include "fwd.h"
#include "maps.h"

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
static __always_inline int icmp_unreach(struct __sk_buff *skb, struct pkt *p, struct ila_counters *st, int sent_stat)
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
	COUNT(sent_stat);
	return forward(skb, p, st);
}

#define ICMP_INTERVAL_NS 1000000000ULL

/* icmp_allowed reports whether an ICMPv6 error about dst may be sent now:
 * at most one per SIR address per ICMP_INTERVAL_NS. */
static __always_inline int icmp_allowed(union addr *dst)
{
	struct ila_key k = {.sir = dst->q[0], .id = dst->q[1]};
	__u64 now = bpf_ktime_get_ns();
	__u64 *last = bpf_map_lookup_elem(&ila_icmp_rl, &k);
	if (last && now - *last < ICMP_INTERVAL_NS)
		return 0;
	bpf_map_update_elem(&ila_icmp_rl, &k, &now, BPF_ANY);
	return 1;
}

/* suspended answers a packet for a suspended local task (its SIR address
 * sir) arriving on the uplink: an ICMPv6 address unreachable to the
 * sender, at most one per second per task and never about an ICMPv6 error
 * or to a multicast source; otherwise (or if the error cannot be built) a
 * drop. Both counted. */
static __always_inline int suspended(struct __sk_buff *skb, struct pkt *p, union addr *sir, struct ila_counters *st)
{
	COUNT(STAT_DROP_SUSPENDED);
	if (!is_icmp_error(p) && !is_multicast(&p->src) && icmp_allowed(sir)) {
		int r = icmp_unreach(skb, p, st, STAT_SUSPENDED_ICMP_SENT);
		if (r >= 0)
			return r;
	}
	return TC_ACT_SHOT;
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

#endif
