/* Writing the new destination, and sending a packet on: FIB lookup with a
 * next-hop cache, or delivery to a local task. */
#ifndef ILA_LIB_FWD_H
#define ILA_LIB_FWD_H

#include "csum.h"
#include "maps.h"
#include "parse.h"

#define ILA_NH_TTL_JIFFIES 256 /* 0.25 s at HZ=1000, 1 s at HZ=250 */

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

#endif
