/* Headers, packet offsets and the types every part of the datapath uses. */
#ifndef ILA_LIB_COMMON_H
#define ILA_LIB_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "../ila.h"

#define AF_INET6 10
#define ETH_HLEN_ 14
#define IP6_OFF ETH_HLEN_
#define IP6_DST_OFF (IP6_OFF + 24)
#define IP6_SRC_OFF (IP6_OFF + 8)
#define L4_MIN_OFF (IP6_OFF + 40)

#define NH_HOP 0
#define NH_TCP 6
#define NH_UDP 17
#define NH_ROUTING 43
#define NH_FRAGMENT 44
#define NH_AH 51
#define NH_ICMPV6 58
#define NH_NONE 59
#define NH_DSTOPTS 60

#define MAX_EXT 6

union addr {
	__u8 b[16];
	__be16 w[8];
	__be32 l[4];
	__u64 q[2];
};

struct pkt {
	__u32 l4_off;
	__u8 proto;
	__u8 has_l4;   /* first fragment (or unfragmented) and L4 header known */
	__u8 icmp_type;
	__u8 pad;
	union addr src;
	union addr dst;
};

#endif
