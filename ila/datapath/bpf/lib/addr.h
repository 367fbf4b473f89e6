/* SIR <-> ILA address rewriting, with the checksum-neutral adjustment of
 * draft-herbert-intarea-ila section 5.3 (with or without the C-bit). */
#ifndef ILA_LIB_ADDR_H
#define ILA_LIB_ADDR_H

#include "csum.h"
#include "maps.h"

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

#endif
