/* Monitor events (ilactl monitor): drops with their reason, misses and
 * redirects, through a ring buffer. Called on those rare paths only, never
 * on a hit; a no-op unless Go set ILA_F_MONITOR (someone listens), and
 * rate limited per CPU (ILA_MON_PER_SEC; what is over is counted lost). */
#ifndef ILA_LIB_MONITOR_H
#define ILA_LIB_MONITOR_H

#include "maps.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ila_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct ila_mon_budget);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ila_mon_rl SEC(".maps");

/* mon_emit reports one event: what = type << 16 | reason (enum ila_stat),
 * the destination (SIR) address dhi:dlo (0: not parsed). The source is
 * read from the packet. Inlined, and without pointers to the caller's
 * stack or stack of its own: the programs' frames are near the 512-byte
 * limit (a BPF-to-BPF call would add at least 32 bytes to it). */
/* The maps' key 0, not on the stack. */
static const volatile __u32 mon_key0 = 0;

static __always_inline int mon_emit(struct __sk_buff *skb, __u32 what, __u64 dhi, __u64 dlo, __u64 loc)
{
	struct ila_config *cfg = bpf_map_lookup_elem(&ila_cfg, (const void *)&mon_key0);
	if (!cfg || !(cfg->flags & ILA_F_MONITOR))
		return 0;
	struct ila_mon_budget *rl = bpf_map_lookup_elem(&ila_mon_rl, (const void *)&mon_key0);
	if (!rl)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	if (now - rl->window >= 1000000000ULL) {
		rl->window = now;
		rl->count = 0;
	}
	if (rl->count >= ILA_MON_PER_SEC) {
		rl->lost++;
		return 0;
	}
	rl->count++;
	struct ila_mon_event *e = bpf_ringbuf_reserve(&ila_events, sizeof(*e), 0);
	if (!e) {
		rl->lost++;
		return 0;
	}
	e->ts = now;
	e->src[0] = 0;
	e->src[1] = 0;
	if (skb->protocol == bpf_htons(ETH_P_IPV6) && bpf_skb_load_bytes(skb, IP6_SRC_OFF, e->src, 16) < 0) {
		e->src[0] = 0;
		e->src[1] = 0;
	}
	e->dst[0] = dhi;
	e->dst[1] = dlo;
	e->loc = loc;
	e->ifindex = skb->ingress_ifindex;
	e->len = skb->len;
	e->reason = what & 0xffff;
	e->type = what >> 16;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* MON reports an event of the packet p (in scope, parsed) with skb. */
#define MON(type, reason, loc) mon_emit(skb, ((__u32)(type) << 16) | (reason), p.dst.q[0], p.dst.q[1], loc)
/* MON_SIR: an event whose destination is the SIR address a (uplink). */
#define MON_SIR(type, reason, a, loc) mon_emit(skb, ((__u32)(type) << 16) | (reason), (a).q[0], (a).q[1], loc)
/* MON_RAW: an event about a packet that did not parse. */
#define MON_RAW(type, reason) mon_emit(skb, ((__u32)(type) << 16) | (reason), 0, 0, 0)

#endif
