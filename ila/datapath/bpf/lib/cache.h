/* Lookups through the per-CPU caches in front of the hash tables
 * (see ila_map_cache and ila_up_cache in maps.h). */
#ifndef ILA_LIB_CACHE_H
#define ILA_LIB_CACHE_H

#include "addr.h"
#include "maps.h"

/* table_gen returns the generation of the tables' contents (ila_gen); 0
 * disables the caches. */
static __always_inline __u64 table_gen(void)
{
	__u32 zero = 0;
	__u64 *g = bpf_map_lookup_elem(&ila_gen, &zero);
	return g ? *(volatile __u64 *)g : 0;
}

/* lookup_mapping returns the mapping of k (from the per-CPU cache, or from
 * ila_mappings and then cached), NULL when there is none. The entry stays
 * valid until the next lookup_mapping on this CPU. */
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
	e->tenant = m->tenant;
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

#endif
