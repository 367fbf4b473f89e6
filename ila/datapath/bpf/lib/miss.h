/* Reporting lookup misses to Go (rate limited, through a ring buffer). */
#ifndef ILA_LIB_MISS_H
#define ILA_LIB_MISS_H

#include "maps.h"

#define MISS_INTERVAL_NS 1000000000ULL

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

#endif
