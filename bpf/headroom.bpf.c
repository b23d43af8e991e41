// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Headroom XDP steering program.
 *
 * Parses Ethernet (with up to two 802.1Q/802.1ad tags), ARP, IPv4 and IPv6
 * (with TCP, UDP and ICMP behind them) and decides per frame:
 *   - frames for the node's own address go to the kernel stack (XDP_PASS);
 *   - frames Headroom manages (ARP, IPv4, IPv6) are redirected to the AF_XDP
 *     socket bound to the receive queue; with no socket there they pass,
 *     so a missing worker fails open instead of black-holing traffic;
 *   - everything else passes.
 * Every decision is counted per CPU in `verdicts`.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "headroom.h"

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define ETH_P_ARP_ 0x0806
#define ETH_P_IP_ 0x0800
#define ETH_P_IPV6_ 0x86DD

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, HR_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HR_V_MAX);
	__type(key, __u32);
	__type(value, struct hr_counter);
} verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hr_xdp_config);
} hr_config SEC(".maps");

/* Minimal on-wire layouts; the program only needs a few fields. */
struct vlan_hdr_ {
	__be16 tci;
	__be16 proto;
};

struct arp_ipv4_ {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 oper;
	__u8 sha[6];
	__be32 spa;
	__u8 tha[6];
	__be32 tpa;
} __attribute__((packed));

struct ipv4_min_ {
	__u8 vihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag;
	__u8 ttl;
	__u8 proto;
	__be16 csum;
	__be32 saddr;
	__be32 daddr;
};

struct ipv6_min_ {
	__be32 vtc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

static __always_inline int count(__u32 slot, __u64 bytes, int action)
{
	struct hr_counter *c = bpf_map_lookup_elem(&verdicts, &slot);

	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
	return action;
}

SEC("xdp")
int headroom_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 len = data_end - data;
	__u32 key = 0;
	struct hr_xdp_config *cfg = bpf_map_lookup_elem(&hr_config, &key);
	struct ethhdr *eth = data;
	void *l3;
	__u16 proto;
	int i;

	if (!cfg || !(cfg->flags & HR_CFG_ENABLED))
		return count(HR_V_PASS_DISABLED, len, XDP_PASS);

	if ((void *)(eth + 1) > data_end)
		return count(HR_V_PASS_MALFORMED, len, XDP_PASS);
	proto = bpf_ntohs(eth->h_proto);
	l3 = eth + 1;

#pragma unroll
	for (i = 0; i < 2; i++) {
		if (proto != ETH_P_8021Q_ && proto != ETH_P_8021AD_)
			break;
		struct vlan_hdr_ *vh = l3;

		if ((void *)(vh + 1) > data_end)
			return count(HR_V_PASS_MALFORMED, len, XDP_PASS);
		proto = bpf_ntohs(vh->proto);
		l3 = vh + 1;
	}

	if (proto == ETH_P_ARP_) {
		struct arp_ipv4_ *arp = l3;

		if ((void *)(arp + 1) > data_end)
			return count(HR_V_PASS_MALFORMED, len, XDP_PASS);
		if (cfg->node_ip4 && arp->tpa == cfg->node_ip4)
			return count(HR_V_PASS_LOCAL, len, XDP_PASS);
	} else if (proto == ETH_P_IP_) {
		struct ipv4_min_ *ip = l3;

		if ((void *)(ip + 1) > data_end || (ip->vihl >> 4) != 4 || (ip->vihl & 0xf) < 5)
			return count(HR_V_PASS_MALFORMED, len, XDP_PASS);
		if (cfg->node_ip4 && ip->daddr == cfg->node_ip4)
			return count(HR_V_PASS_LOCAL, len, XDP_PASS);
	} else if (proto == ETH_P_IPV6_) {
		struct ipv6_min_ *ip6 = l3;

		if ((void *)(ip6 + 1) > data_end || (bpf_ntohl(ip6->vtc_flow) >> 28) != 6)
			return count(HR_V_PASS_MALFORMED, len, XDP_PASS);
	} else {
		return count(HR_V_PASS_UNMANAGED, len, XDP_PASS);
	}

	__u32 q = ctx->rx_queue_index;

	if (!bpf_map_lookup_elem(&xsks, &q))
		return count(HR_V_PASS_NO_XSK, len, XDP_PASS);
	count(HR_V_REDIRECT, len, XDP_PASS);
	return bpf_redirect_map(&xsks, q, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
