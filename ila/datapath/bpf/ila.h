/* Types shared between the eBPF programs and the Go loader (bpf2go -type).
 * Addresses and address halves are kept in network byte order: a __u64
 * "sir", "id" or "loc" is the 8 bytes as they appear in the packet. */
#ifndef ILA_H
#define ILA_H

#include <linux/types.h>

/* Enums are exported to Go by bpf2go -type (gen.go): Go uses the generated
 * constants, never copies. */

/* ila_csum mirrors ila.CsumMode (TestCsumEnumSync). */
enum ila_csum {
	ILA_CSUM_ADJUST_TRANSPORT = 0,
	ILA_CSUM_NEUTRAL_MAP = 1,
	ILA_CSUM_NO_ACTION = 2,
	ILA_CSUM_NEUTRAL_MAP_AUTO = 3,
};

/* ila_stat indexes the per-CPU counter array; keep stat names in Go in sync
 * (TestStatEnumSync). */
enum ila_stat {
	STAT_RX_TASK = 0,          /* packets seen on task ports */
	STAT_RX_UPLINK,            /* packets seen on uplinks */
	STAT_RX_ROUTER,            /* packets seen on ILA-R ports */
	STAT_TRANSLATED,           /* SIR->ILA on an NVE (task ingress) */
	STAT_LOCAL_DELIVERED,      /* task -> task on the same NVE */
	STAT_DELIVERED,            /* ILA->SIR and delivered to a local task */
	STAT_INFLIGHT_FORWARDED,   /* re-translated to a new locator */
	STAT_MISS,                 /* SIR->ILA lookup missed (NVE) */
	STAT_MISS_REPORTED,        /* miss events written to the ring buffer */
	STAT_MISS_RATELIMITED,     /* misses not reported (rate limit) */
	STAT_MISS_RINGBUF_FULL,    /* misses lost: ring buffer full */
	STAT_ROUTER_TRANSLATED,    /* SIR->ILA on the ILA-R */
	STAT_ICMP_ERROR_MAPPED,    /* ICMPv6 errors whose quoted ILA dst was mapped back */
	STAT_FIB_REDIRECT,         /* forwarded by fib lookup + redirect */
	STAT_FIB_STACK,            /* handed to the stack after translation */
	STAT_NH_CACHE_HIT,         /* forwarded with a cached next hop */
	STAT_PASS_NON_IPV6,
	STAT_PASS_ND,              /* neighbour discovery / RS / RA / redirect */
	STAT_PASS_MULTICAST,
	STAT_PASS_LINK_LOCAL,
	STAT_PASS_NOT_SIR,         /* task traffic to non-ILA destinations */
	STAT_PASS_NOT_OURS,        /* uplink traffic not for our locators */
	STAT_PASS_MISS,            /* misses forwarded untranslated (MissPass) */
	STAT_PASS_UNKNOWN,         /* unknown identifier left to the stack */
	STAT_DROP_MALFORMED,
	STAT_DROP_SPOOFED_SOURCE,  /* task sent from an address not bound to its port */
	STAT_DROP_LOCATOR_DST,     /* task sent to locator space */
	STAT_DROP_LOCATOR_SRC,     /* fabric packet with a locator-space source */
	STAT_DROP_MISS,            /* MissDrop */
	STAT_DROP_UNKNOWN,         /* identifier neither local nor in flight */
	STAT_DROP_ROUTER_MISS,     /* ILA-R full-table miss */
	STAT_ROUTER_ICMP_SENT,     /* ICMPv6 address unreachable sent for a miss */
	STAT_DROP_ERROR,           /* a helper failed while rewriting */
	STAT_DROP_ND_SIR,          /* task's unicast ND to a SIR address (answered by the ND emulator's tap; not routed on) */
	STAT_DROP_SUSPENDED,       /* uplink packet for a local task suspended by a cold/warm move */
	STAT_SUSPENDED_ICMP_SENT,  /* ICMPv6 address unreachable sent for a suspended task (rate limited) */
	STAT_STALE_REDIRECTED,     /* uplink packet for a task no longer here, re-translated by the mapping table */
	STAT_DROP_TENANT,          /* destination in another tenant and no policy allows it */
	STAT_DROP_SPOOFED_IPV4,    /* task sent IPv4 from an address not bound to its port */
	STAT__MAX,
};

struct ila_counters {
	__u64 v[STAT__MAX];
};

struct ila_key {
	__u64 sir;
	__u64 id;
};

/* Flags of struct ila_map_val. */
enum ila_map_flag {
	ILA_MAP_F_OWN_LOC = 1, /* the locator is one of this node's (set by Go) */
};

struct ila_map_val {
	__u64 loc;
	__u8 csum;
	__u8 flags;
	__u8 pad[2];
	__u32 tenant; /* tenant id of the task (0: untagged), lib/tenant.h */
};

/* ILA_MAX_PORT_IFINDEX bounds the ifindex-indexed port table (ila_ports):
 * larger ifindexes validate through ila_locals only. */
enum ila_limit {
	ILA_MAX_PORT_IFINDEX = 65536,
};

/* The first SIR address bound to a task port, by ifindex: the cheap
 * anti-spoofing check (others fall back to ila_locals). Zero = none. */
struct ila_port {
	__u64 sir;
	__u64 id;
};

/* Next hop of a locator /64 from the last FIB lookup (refreshed after
 * ILA_NH_TTL_JIFFIES). */
struct ila_nh {
	__u64 dst64;   /* tag: the destination /64 (network order) */
	__u64 expires; /* jiffies */
	__u32 ifindex;
	__u16 mtu;
	__u8 dmac[6];
	__u8 smac[6];
	__u8 pad[6];
};

/* Flags of struct ila_local_val. */
enum ila_local_flag {
	/* The task is suspended by a cold or warm move (draft-ietf-nvo3-vmm
	 * section 4.2.1): packets for it are not delivered to its port; the
	 * uplink answers ICMPv6 address unreachable (rate limited) and drops,
	 * the task ports treat it as a miss (the ILA router answers). */
	ILA_LOCAL_F_SUSPENDED = 1,
};

/* Per task-facing port, by ifindex (lib/tenant.h): the tenant of its task
 * and the IPv4 address it may send from (network order; 0 = none). */
struct ila_port_ext {
	__u32 tenant;
	__be32 ipv4;
};

/* A pair of tenants allowed to talk (a < b). */
struct ila_policy_key {
	__u32 a;
	__u32 b;
};

struct ila_local_val {
	__u32 ifindex;
	__u8 mac[6];
	__u8 has_mac;
	__u8 flags;
};

struct ila_inflight_val {
	__u64 loc;
	__u64 deadline_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u8 csum;
	__u8 pad[7];
};

/* A locator of this node. */
struct ila_myloc_val {
	__u64 sir;
	__u8 csum;
	__u8 pad[7];
};

/* A SIR prefix known to this node. */
struct ila_domain_val {
	__u8 csum;
	__u8 pad[7];
};

/* A locator known to this node (own or remote): locator space. */
struct ila_locspace_val {
	__u64 sir;
	__u32 refs;
	__u8 csum;
	__u8 pad[3];
};

/* Flags of struct ila_config. */
enum ila_cfg_flag {
	ILA_F_MISS_DROP = 1,    /* drop task traffic to unmapped SIR addresses (else pass) */
	ILA_F_UNKNOWN_PASS = 2, /* pass uplink traffic for unknown identifiers (else drop) */
	ILA_F_ROUTER = 4,       /* the node is an ILA router */
	ILA_F_MONITOR = 8,      /* someone monitors: report events (lib/monitor.h) */
};

struct ila_config {
	__u32 flags;
	__u8 gw_mac[6];
	__u8 pad[2];
};

struct ila_miss_event {
	__u64 sir;
	__u64 id;
};

/* Monitor events (lib/monitor.h): only on rare paths (drops, misses,
 * redirects), only while ILA_F_MONITOR is set, at most
 * ILA_MON_PER_SEC per CPU per second. */
enum ila_mon_type {
	ILA_MON_DROP = 1,     /* dropped; reason: the drop counter */
	ILA_MON_MISS = 2,     /* lookup missed and the packet went on */
	ILA_MON_REDIRECT = 3, /* re-translated to loc (in flight, stale sender) */
	ILA_MON_PER_SEC = 2000,
};

struct ila_mon_event {
	__u64 ts;     /* bpf_ktime_get_ns */
	__u64 src[2]; /* IPv6 source and destination as on the wire (0: not IPv6) */
	__u64 dst[2];
	__u64 loc;    /* redirect: the locator it went to */
	__u32 ifindex;
	__u32 len;
	__u16 reason; /* enum ila_stat: the counter that counted it */
	__u8 type;    /* enum ila_mon_type */
	__u8 pad[5];
};

/* Per-CPU rate limit of the monitor: events in the current second, and
 * the events not reported (limit or ring buffer full) since the start. */
struct ila_mon_budget {
	__u64 window;
	__u64 count;
	__u64 lost;
};

#endif
