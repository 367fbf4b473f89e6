/* The IPv6 parser (extension headers walked) and packet class tests. */
#ifndef ILA_LIB_PARSE_H
#define ILA_LIB_PARSE_H

#include "csum.h"

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

#endif
