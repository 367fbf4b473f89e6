/* Tenant isolation and IPv4 source validation (docs/TENANTS.md).
 *
 * Every task-facing port carries its task's tenant id and IPv4 address
 * (ila_port_ext, by ifindex); every mapping carries the tenant id of its
 * task (ila_map_val.tenant). A packet from a task may reach a task of the
 * same tenant; across tenants only when ila_policy holds the pair (written
 * by Go from the store's /ila/v1/policies/). Tenant 0 is "untagged": a
 * packet whose source or destination is untagged is not checked. */
#ifndef ILA_LIB_TENANT_H
#define ILA_LIB_TENANT_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ila_port_ext);
	__uint(max_entries, ILA_MAX_PORT_IFINDEX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ila_port_exts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct ila_policy_key);
	__type(value, __u8);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ila_policy SEC(".maps");

/* port_tenant returns the tenant of the task on port ifindex (0: none). */
static __always_inline __u32 port_tenant(__u32 ifindex)
{
	struct ila_port_ext *pe = bpf_map_lookup_elem(&ila_port_exts, &ifindex);
	return pe ? pe->tenant : 0;
}

/* tenant_allowed says whether tenant src may send to tenant dst. */
static __always_inline int tenant_allowed(__u32 src, __u32 dst)
{
	if (src == dst || src == 0 || dst == 0)
		return 1;
	struct ila_policy_key k = {.a = src < dst ? src : dst, .b = src < dst ? dst : src};
	return bpf_map_lookup_elem(&ila_policy, &k) != NULL;
}

/* ipv4_source_ok checks the IPv4 source of a frame from port ifindex
 * against the address bound to the port: 1 = fine (or not IPv4, or no
 * address bound), 0 = spoofed or truncated. */
static __always_inline int ipv4_source_ok(struct __sk_buff *skb, __u32 ifindex)
{
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return 1;
	struct ila_port_ext *pe = bpf_map_lookup_elem(&ila_port_exts, &ifindex);
	if (!pe || pe->ipv4 == 0)
		return 1;
	__be32 src;
	if (bpf_skb_load_bytes(skb, ETH_HLEN_ + 12, &src, sizeof(src)) < 0)
		return 0;
	return src == pe->ipv4;
}

#endif
