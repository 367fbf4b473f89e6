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
 *   ila_empty        a no-op: the baseline of the benchmarks
 *
 * The parts they share live in lib/ (as cilium's bpf/lib): maps.h the maps,
 * csum.h checksum math, addr.h SIR<->ILA rewriting, cache.h the per-CPU
 * lookup caches, parse.h the parser, fwd.h rewriting and forwarding,
 * miss.h miss reports, icmp6.h ICMPv6 errors, tenant.h tenant isolation
 * and IPv4 source validation, monitor.h monitor events (ilactl monitor).
 * Types shared with Go are in ila.h.
 */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/addr.h"
#include "lib/cache.h"
#include "lib/parse.h"
#include "lib/fwd.h"
#include "lib/miss.h"
#include "lib/icmp6.h"
#include "lib/tenant.h"
#include "lib/monitor.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Types only Go uses, kept in the BTF for bpf2go -type (one pointer in
 * .bss that nothing reads). */
struct ila_go_types {
	struct ila_miss_event miss_event;
	struct ila_mon_event mon_event;
	enum ila_mon_type mon_type;
	enum ila_csum csum;
	enum ila_cfg_flag cfg_flag;
	enum ila_map_flag map_flag;
	enum ila_limit limit;
	enum ila_local_flag local_flag;
};
const struct ila_go_types *unused_go_types __attribute__((unused));

SEC("tc")
int ila_task(struct __sk_buff *skb)
{
	struct pkt p;
	struct ila_counters *st = stats();
	COUNT(STAT_RX_TASK);
	int r = parse(skb, &p);
	if (r == 0) {
		if (!ipv4_source_ok(skb, skb->ingress_ifindex)) {
			COUNT(STAT_DROP_SPOOFED_IPV4);
			MON_RAW(ILA_MON_DROP, STAT_DROP_SPOOFED_IPV4);
			return TC_ACT_SHOT;
		}
		COUNT(STAT_PASS_NON_IPV6);
		return TC_ACT_OK;
	}
	if (r < 0) {
		COUNT(STAT_DROP_MALFORMED);
		MON_RAW(ILA_MON_DROP, STAT_DROP_MALFORMED);
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
		MON(ILA_MON_DROP, STAT_DROP_SPOOFED_SOURCE, 0);
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
			MON(ILA_MON_DROP, STAT_DROP_SPOOFED_SOURCE, 0);
			return TC_ACT_SHOT;
		}
	}

	__u32 tenant = port_tenant(in);
	struct ila_key dk = {.sir = p.dst.q[0], .id = p.dst.q[1]};
	struct ila_map_ent *m = lookup_mapping(&dk);
	if (m) {
		__u8 mode = m->csum;
		if (!tenant_allowed(tenant, m->tenant)) {
			COUNT(STAT_DROP_TENANT);
			MON(ILA_MON_DROP, STAT_DROP_TENANT, 0);
			return TC_ACT_SHOT;
		}
		if (m->flags & ILA_MAP_F_OWN_LOC) {
			struct ila_local_val *lv = bpf_map_lookup_elem(&ila_locals, &dk);
			if (lv && !(lv->flags & ILA_LOCAL_F_SUSPENDED)) {
				COUNT(STAT_LOCAL_DELIVERED);
				return deliver(skb, &p, lv, config());
			}
		}
		union addr n = p.dst;
		sir_to_ila_ent(&n, m);
		if (rewrite_dst(skb, &p, &n, mode) < 0) {
			COUNT(STAT_DROP_ERROR);
			MON(ILA_MON_DROP, STAT_DROP_ERROR, 0);
			return TC_ACT_SHOT;
		}
		COUNT(STAT_TRANSLATED);
		return forward(skb, &p, st);
	}
	struct ila_local_val *lv = bpf_map_lookup_elem(&ila_locals, &dk);
	if (lv && !(lv->flags & ILA_LOCAL_F_SUSPENDED)) {
		if (!tenant_allowed(tenant, port_tenant(lv->ifindex))) {
			COUNT(STAT_DROP_TENANT);
			MON(ILA_MON_DROP, STAT_DROP_TENANT, 0);
			return TC_ACT_SHOT;
		}
		COUNT(STAT_LOCAL_DELIVERED);
		return deliver(skb, &p, lv, config());
	}
	/* A suspended local task is a miss like any unmapped address: the
	 * packet takes the ILA router, which answers unreachable. */
	__u64 hi = p.dst.q[0];
	if (bpf_map_lookup_elem(&ila_domains, &hi)) {
		COUNT(STAT_MISS);
		report_miss(&p.dst, st);
		struct ila_config *cfg = config();
		if (cfg && (cfg->flags & ILA_F_MISS_DROP)) {
			COUNT(STAT_DROP_MISS);
			MON(ILA_MON_DROP, STAT_DROP_MISS, 0);
			return TC_ACT_SHOT;
		}
		COUNT(STAT_PASS_MISS);
		MON(ILA_MON_MISS, STAT_PASS_MISS, 0);
		return TC_ACT_OK;
	}
	if (bpf_map_lookup_elem(&ila_locspace, &hi)) {
		COUNT(STAT_DROP_LOCATOR_DST);
		MON(ILA_MON_DROP, STAT_DROP_LOCATOR_DST, 0);
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

/* retranslate rewrites a packet that arrived for one of our locators (its
 * destination's SIR address sir, our locator's checksum mode ml_csum) to
 * locator loc with checksum mode mode: in-flight forwarding after a move,
 * and redirects of stale senders. Returns -1 on helper failure. */
static __always_inline int retranslate(struct __sk_buff *skb, struct pkt *p, union addr *sir, __u8 ml_csum, __u64 loc, __u8 mode)
{
	union addr n = *sir;
	sir_to_ila(&n, loc, mode);
	if (ml_csum == ILA_CSUM_ADJUST_TRANSPORT || mode == ILA_CSUM_ADJUST_TRANSPORT) {
		/* Keep the wire checksum what the new locator's receiver
		 * expects: patch from the current address. */
		if (rewrite_dst(skb, p, &n, ILA_CSUM_ADJUST_TRANSPORT) < 0)
			return -1;
		if (ml_csum != mode) {
			/* One side adjusts, the other does not: the checksum
			 * must be relative to the SIR (for the no-adjust side)
			 * or the ILA address. */
			union addr base = (ml_csum == ILA_CSUM_ADJUST_TRANSPORT) ? *sir : n;
			union addr from = (ml_csum == ILA_CSUM_ADJUST_TRANSPORT) ? n : *sir;
			if (p->has_l4) {
				int f = csum_field(p->proto);
				__s64 d = csum_diff16(from.l, base.l);
				__u64 fl2 = BPF_F_PSEUDO_HDR | (p->proto == NH_UDP ? BPF_F_MARK_MANGLED_0 : 0);
				if (f < 0 || d < 0 || bpf_l4_csum_replace(skb, p->l4_off + f, 0, d, fl2) < 0)
					return -1;
			}
		}
		return 0;
	}
	return rewrite_dst(skb, p, &n, mode) < 0 ? -1 : 0;
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
		MON_RAW(ILA_MON_DROP, STAT_DROP_MALFORMED);
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
		MON(ILA_MON_DROP, STAT_DROP_LOCATOR_SRC, 0);
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
		if (ue->lv.flags & ILA_LOCAL_F_SUSPENDED) {
			MON_SIR(ILA_MON_DROP, STAT_DROP_SUSPENDED, sir, 0);
			return suspended(skb, &p, &sir, st);
		}
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
		if (retranslate(skb, &p, &sir, ml_csum, fl->loc, fl->csum) < 0)
			goto err;
		COUNT(STAT_INFLIGHT_FORWARDED);
		MON_SIR(ILA_MON_REDIRECT, STAT_INFLIGHT_FORWARDED, sir, fl->loc);
		return forward(skb, &p, st);
	}
	/* Neither here nor in flight: a sender with a stale mapping (its
	 * watch lags, or the in-flight time is over). Look the identifier up
	 * (draft-ietf-nvo3-vmm-15 section 4.2: an NVE without an entry asks
	 * the NVA): if this node maps it elsewhere, redirect there; else
	 * report the miss (pull mode fetches the mapping for the next
	 * packets) and apply the unknown-identifier policy. */
	struct ila_map_ent *m = lookup_mapping(&k);
	if (m && !(m->flags & ILA_MAP_F_OWN_LOC)) {
		if (retranslate(skb, &p, &sir, ml_csum, m->loc, m->csum) < 0)
			goto err;
		COUNT(STAT_STALE_REDIRECTED);
		MON_SIR(ILA_MON_REDIRECT, STAT_STALE_REDIRECTED, sir, m->loc);
		return forward(skb, &p, st);
	}
	report_miss(&sir, st);
	struct ila_config *cfg = config();
	if (cfg && (cfg->flags & ILA_F_UNKNOWN_PASS)) {
		COUNT(STAT_PASS_UNKNOWN);
		MON_SIR(ILA_MON_MISS, STAT_PASS_UNKNOWN, sir, 0);
		return TC_ACT_OK;
	}
	COUNT(STAT_DROP_UNKNOWN);
	MON_SIR(ILA_MON_DROP, STAT_DROP_UNKNOWN, sir, 0);
	return TC_ACT_SHOT;
err:
	COUNT(STAT_DROP_ERROR);
	MON(ILA_MON_DROP, STAT_DROP_ERROR, 0);
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
		MON_RAW(ILA_MON_DROP, STAT_DROP_MALFORMED);
		return TC_ACT_SHOT;
	}
	if (is_nd(&p)) {
		COUNT(STAT_PASS_ND);
		return TC_ACT_OK;
	}
	struct ila_key dk = {.sir = p.dst.q[0], .id = p.dst.q[1]};
	struct ila_map_ent *m = lookup_mapping(&dk);
	if (m) {
		/* A task's packet that missed at its NVE: the source's mapping
		 * names its tenant (sources that are not mapped tasks are not
		 * checked: hosts outside ILA). m is copied first: the source's
		 * lookup may reuse its cache slot. */
		struct ila_map_ent dm = *m;
		if (dm.tenant) {
			struct ila_key sk = {.sir = p.src.q[0], .id = p.src.q[1]};
			struct ila_map_ent *sm = lookup_mapping(&sk);
			if (sm && !tenant_allowed(sm->tenant, dm.tenant)) {
				COUNT(STAT_DROP_TENANT);
				MON(ILA_MON_DROP, STAT_DROP_TENANT, 0);
				return TC_ACT_SHOT;
			}
		}
		union addr n = p.dst;
		__u8 mode = dm.csum;
		sir_to_ila_ent(&n, &dm);
		if (rewrite_dst(skb, &p, &n, mode) < 0) {
			COUNT(STAT_DROP_ERROR);
			MON(ILA_MON_DROP, STAT_DROP_ERROR, 0);
			return TC_ACT_SHOT;
		}
		COUNT(STAT_ROUTER_TRANSLATED);
		return forward(skb, &p, st);
	}
	__u64 hi = p.dst.q[0];
	if (bpf_map_lookup_elem(&ila_domains, &hi)) {
		COUNT(STAT_DROP_ROUTER_MISS);
		MON(ILA_MON_DROP, STAT_DROP_ROUTER_MISS, 0);
		/* At most one ICMPv6 error per identifier per second (the miss
		 * report's rate limit), never about an ICMPv6 error. */
		if (report_miss(&p.dst, st) && !is_icmp_error(&p) && !is_multicast(&p.src)) {
			int r = icmp_unreach(skb, &p, st, STAT_ROUTER_ICMP_SENT);
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
