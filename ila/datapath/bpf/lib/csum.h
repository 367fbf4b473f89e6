/* One's-complement checksum math: the checksum-neutral adjustment of a
 * locator and the transport checksum field offsets. */
#ifndef ILA_LIB_CSUM_H
#define ILA_LIB_CSUM_H

#include "common.h"

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

#endif
