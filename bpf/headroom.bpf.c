// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Headroom XDP steering program.
 *
 * Parses Ethernet (with up to two 802.1Q/802.1ad tags), ARP, IPv4 and IPv6
 * (with TCP, UDP and ICMP behind them) and decides per frame:
 *   - node traffic goes to the kernel stack (XDP_PASS): the information
 *     exchange's UDP to or from the node address, or with
 *     HR_CFG_BYPASS_ADDRESS everything to or from it;
 *   - frames Headroom manages (ARP, IPv4, IPv6) are redirected to the AF_XDP
 *     socket bound to the receive queue; with no socket there they pass,
 *     so a missing worker fails open instead of black-holing traffic;
 *   - everything else passes.
 * The program is multi-buffer aware (xdp.frags): jumbo frames and
 * aggregates (GRO/LRO upstream) arrive as several buffers and are redirected
 * whole (the sockets are bound with XDP_USE_SG); only the first buffer is
 * parsed, and a frame longer than the workers take is passed and counted.
 * Every decision is counted per CPU in `verdicts`, with the frame's full
 * length in bytes.
 *
 * Fast path: a flow the workers have decided (classified into its job, not
 * paced, not directed) has an entry in `flows`; its frames are counted in
 * `job_stats` and redirected to the other interface (`tx_port`) here, without
 * a trip through AF_XDP. Any doubt sends the frame to the workers, the
 * authority: no entry, an entry from an older decision generation, a frame
 * longer than the
 * egress MTU or spanning several buffers, anything but TCP/UDP over IPv4 or
 * IPv6 without extension headers. Misses are counted by reason. A partial
 * checksum (a local stack offloaded it; a veth hands such frames over as
 * they are) is completed here, as the workers would.
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

/* Decided flows (max_entries set by the daemon before load). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct hr_flow_key);
	__type(value, struct hr_flow_entry);
} flows SEC(".maps");

/* Entry 0: the other interface, where fast-path frames leave; entry 1: this
 * interface (encapsulated frames go back out by it: a redirect rather than
 * XDP_TX, because veth kicks its peer for redirected frames even when the
 * peer has no XDP program of its own, but not for XDP_TX). */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} tx_port SEC(".maps");

/* Packets and bytes the fast path forwarded, per job, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HR_MAX_JOBS);
	__type(key, __u32);
	__type(value, struct hr_counter);
} job_stats SEC(".maps");

/* Underlay addresses of the pool's nodes (network order -> node id):
 * encapsulated frames are decapsulated only from these. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} peers SEC(".maps");

/* Fast-path counters (enum hr_fp_stat), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HR_FP_STAT_MAX);
	__type(key, __u32);
	__type(value, struct hr_counter);
} fp_stats SEC(".maps");

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

struct udp_min_ {
	__be16 source;
	__be16 dest;
	__be16 len;
	__be16 check;
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

static __always_inline void count_map(void *map, __u32 slot, __u64 bytes)
{
	struct hr_counter *c = bpf_map_lookup_elem(map, &slot);

	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

static __always_inline __u32 fold32(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u32)s;
}

/* Whether the TCP/UDP checksum field holds only the pseudo-header sum, as a
 * stack that offloads checksums leaves it (see the workers' partial_checksum
 * module: a complete checksum matches by chance 1 in 65536, and is then just
 * completed again by the worker, unchanged). `words` is the pseudo header
 * without the length, summed as 16-bit words; `l4_len` the L4 length. */
static __always_inline int is_partial(__u64 words, __u32 l4_len, __u8 proto, __u16 check)
{
	__u32 folded = fold32(words + l4_len + proto);

	if (proto == IPPROTO_UDP && check == 0)
		return 0;
	return bpf_ntohs(check) == folded;
}

static __always_inline __u64 sum16(const __u8 *p, int n)
{
	__u64 s = 0;
	int i;

#pragma unroll
	for (i = 0; i < 16; i += 2) {
		if (i < n)
			s += ((__u32)p[i] << 8) | p[i + 1];
	}
	return s;
}

/* State of one checksum completion across bpf_loop iterations. */
struct csum_walk {
	struct xdp_md *ctx;
	__u32 off;
	__u32 rem;
	__u32 seed;
	int err;
};

/* One 256-byte chunk (bpf_csum_diff takes at most 512 bytes and a multiple
 * of 4; copying through bpf_xdp_load_bytes and running as a bpf_loop
 * callback keeps the verifier's work small). */
static long csum_chunk(__u32 i, void *arg)
{
	struct csum_walk *w = arg;
	__u8 buf[256];
	__u32 n = w->rem;
	__s64 r;

	if (n == 0)
		return 1;
	if (n > 256)
		n = 256;
	/* Bounds the verifier can follow: 1..=256 (the barrier keeps the
	 * compiler from dropping the mask it can prove redundant). */
	asm volatile("" : "+r"(n));
	n &= 0x1ff;
	if (n == 0 || n > 256) {
		w->err = 1;
		return 1;
	}
	/* A short last chunk is summed zero-padded to the whole buffer: zeros
	 * add nothing, and the length stays constant. */
	if (n < 256)
		__builtin_memset(buf, 0, sizeof(buf));
	if (bpf_xdp_load_bytes(w->ctx, w->off, buf, n)) {
		w->err = 1;
		return 1;
	}
	r = bpf_csum_diff(0, 0, (__be32 *)buf, sizeof(buf), w->seed);
	if (r < 0) {
		w->err = 1;
		return 1;
	}
	w->seed = r;
	w->off += n;
	w->rem -= n;
	return 0;
}

/* Completes a partial TCP/UDP checksum in place: the field already holds
 * the pseudo-header sum, so summing the L4 bytes with it gives the whole sum
 * (memory-order arithmetic, as the kernel's own csum helpers). Returns 0, or
 * -1 if the bytes could not be read. */
static __always_inline int complete_csum(struct xdp_md *ctx, __u32 l4_off, __u32 l4_len,
					 __u16 *field, int udp)
{
	struct csum_walk w = { .ctx = ctx, .off = l4_off, .rem = l4_len };

	if (l4_len > 16 * 256)
		return -1;
	bpf_loop(16, csum_chunk, &w, 0);
	if (w.err || w.rem)
		return -1;
	__u32 seed = w.seed;

	seed = (seed & 0xffff) + (seed >> 16);
	seed = (seed & 0xffff) + (seed >> 16);
	__u16 c = ~seed;

	if (udp && c == 0)
		c = 0xffff;
	*field = c;
	return 0;
}

struct hr_hdr_ {
	__u8 magic;
	__u8 version;
	__be16 service;
	__be32 origin;
};

#define HR_MAGIC_ 0x48
#define HR_ENCAP_OVERHEAD 36

/* Writes the IPv4 ethertype after an Ethernet header of `eth_len` (14, 18 or
 * 22) bytes, at constant offsets the verifier can check. */
static __always_inline int set_ethertype_ip(void *data, void *data_end, __u32 eth_len)
{
	if (data + 22 > data_end)
		return -1;
	if (eth_len == 14)
		*(__u16 *)(data + 12) = bpf_htons(ETH_P_IP_);
	else if (eth_len == 18)
		*(__u16 *)(data + 16) = bpf_htons(ETH_P_IP_);
	else
		*(__u16 *)(data + 20) = bpf_htons(ETH_P_IP_);
	return 0;
}

static __always_inline __u16 ip_checksum(struct ipv4_min_ *ip)
{
	__s64 r = bpf_csum_diff(0, 0, (__be32 *)ip, 20, 0);
	__u32 s = r < 0 ? 0 : (__u32)r;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return ~s;
}

/* Encapsulates the IPv4 packet at `l3` towards e->encap in place (see
 * dataplane/src/director/encap.rs: outer Ethernet with the frame's VLAN tags,
 * IPv4, UDP, Headroom header). Returns 0 on success. */
static __always_inline int encapsulate(struct xdp_md *ctx, const struct hr_flow_entry *e,
				       __u32 eth_len, __u32 l3_len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 tags[8] = {};
	__u8 tos;

	if (eth_len != 14 && eth_len != 18 && eth_len != 22)
		return -1;
	/* Ethernet padding behind the packet goes. */
	__u64 frame = data_end - data;

	if (frame > eth_len + l3_len) {
		if (bpf_xdp_adjust_tail(ctx, -(int)(frame - eth_len - l3_len)))
			return -1;
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
	}
	if (data + 22 + 2 > data_end)
		return -1;
	__builtin_memcpy(tags, data + 12, 8);
	if (eth_len == 14)
		tos = *(__u8 *)(data + 15);
	else if (eth_len == 18)
		tos = *(__u8 *)(data + 19);
	else
		tos = *(__u8 *)(data + 23);
	if (bpf_xdp_adjust_head(ctx, -HR_ENCAP_OVERHEAD))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + 22 + HR_ENCAP_OVERHEAD > data_end)
		return -1;
	__builtin_memcpy(data, e->encap.dst_mac, 6);
	__builtin_memcpy(data + 6, e->encap.src_mac, 6);
	/* The tags (if any) and the ethertype: IPv4 in every case. */
	__builtin_memcpy(data + 12, tags, 8);
	if (set_ethertype_ip(data, data_end, eth_len))
		return -1;

	struct ipv4_min_ *ip;

	if (eth_len == 14)
		ip = data + 14;
	else if (eth_len == 18)
		ip = data + 18;
	else
		ip = data + 22;

	if ((void *)(ip + 1) > data_end)
		return -1;
	ip->vihl = 0x45;
	ip->tos = tos;
	ip->tot_len = bpf_htons(l3_len + HR_ENCAP_OVERHEAD);
	ip->id = 0;
	ip->frag = bpf_htons(0x4000);
	ip->ttl = 64;
	ip->proto = IPPROTO_UDP;
	ip->csum = 0;
	ip->saddr = e->encap.src_ip;
	ip->daddr = e->encap.dst_ip;
	ip->csum = ip_checksum(ip);

	struct udp_min_ *udp = (void *)(ip + 1);
	struct hr_hdr_ *hr = (void *)(udp + 1);

	if ((void *)(hr + 1) > data_end)
		return -1;
	udp->source = e->encap.sport;
	udp->dest = e->encap.dport;
	udp->len = bpf_htons(l3_len + 16);
	udp->check = 0;
	hr->magic = HR_MAGIC_;
	hr->version = 1 << 4;
	hr->service = e->encap.service;
	hr->origin = e->encap.origin;
	return 0;
}

/* Counts a fast-path miss and hands the frame to the workers. */
#define FP_MISS(reason)                                                      \
	({                                                                   \
		count_map(&fp_stats, (reason), len);                        \
		goto slow;                                                   \
	})

/* Whether an IPv4 packet is node traffic that bypasses the workers. */
static __always_inline int is_node_traffic(const struct hr_xdp_config *cfg,
					   struct ipv4_min_ *ip, void *data_end)
{
	int to_node = ip->daddr == cfg->node_ip4;
	int from_node = ip->saddr == cfg->node_ip4;

	if (!cfg->node_ip4 || (!to_node && !from_node))
		return 0;
	if (cfg->flags & HR_CFG_BYPASS_ADDRESS)
		return 1;
	if (ip->proto != IPPROTO_UDP || !cfg->exchange_port)
		return 0;
	/* Later fragments carry no ports: they are not the exchange's (its
	 * datagrams stay under the MTU). */
	if (ip->frag & bpf_htons(0x1fff))
		return 0;
	struct udp_min_ *udp = (void *)ip + ((ip->vihl & 0xf) << 2);

	if ((void *)(udp + 1) > data_end)
		return 0;
	return (to_node && udp->dest == cfg->exchange_port) ||
	       (from_node && udp->source == cfg->exchange_port);
}

SEC("xdp.frags")
int headroom_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 head_len = data_end - data;
	__u64 len = bpf_xdp_get_buff_len(ctx);
	__u32 key = 0;
	struct hr_xdp_config *cfg = bpf_map_lookup_elem(&hr_config, &key);
	struct ethhdr *eth = data;
	struct hr_flow_key fk = {};
	void *l3;
	void *l4 = 0;
	__u16 *field = 0;
	__u64 pseudo = 0;
	__u32 l3_len = 0;
	__u32 l4_len = 0;
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
		if (i == 0)
			fk.vlan = bpf_ntohs(vh->tci) & 0x0fff;
		l3 = vh + 1;
	}

	if (proto == ETH_P_ARP_) {
		struct arp_ipv4_ *arp = l3;

		if ((void *)(arp + 1) > data_end)
			return count(HR_V_PASS_MALFORMED, len, XDP_PASS);
		if ((cfg->flags & HR_CFG_BYPASS_ADDRESS) && cfg->node_ip4 &&
		    (arp->tpa == cfg->node_ip4 || arp->spa == cfg->node_ip4))
			return count(HR_V_PASS_LOCAL, len, XDP_PASS);
	} else if (proto == ETH_P_IP_) {
		struct ipv4_min_ *ip = l3;

		if ((void *)(ip + 1) > data_end || (ip->vihl >> 4) != 4 || (ip->vihl & 0xf) < 5)
			return count(HR_V_PASS_MALFORMED, len, XDP_PASS);
		if (is_node_traffic(cfg, ip, data_end))
			return count(HR_V_PASS_LOCAL, len, XDP_PASS);
		if (!(ip->frag & bpf_htons(0x3fff))) {
			__u32 ihl = (ip->vihl & 0xf) << 2;

			l3_len = bpf_ntohs(ip->tot_len);
			if (l3_len >= ihl) {
				l4 = (void *)ip + ihl;
				l4_len = l3_len - ihl;
			}
			fk.family = 4;
			fk.proto = ip->proto;
			__builtin_memcpy(fk.src, &ip->saddr, 4);
			__builtin_memcpy(fk.dst, &ip->daddr, 4);
			pseudo = sum16((const __u8 *)&ip->saddr, 8);
		}
	} else if (proto == ETH_P_IPV6_) {
		struct ipv6_min_ *ip6 = l3;

		if ((void *)(ip6 + 1) > data_end || (bpf_ntohl(ip6->vtc_flow) >> 28) != 6)
			return count(HR_V_PASS_MALFORMED, len, XDP_PASS);
		if (ip6->nexthdr == IPPROTO_TCP || ip6->nexthdr == IPPROTO_UDP) {
			l4_len = bpf_ntohs(ip6->payload_len);
			l3_len = 40 + l4_len;
			l4 = ip6 + 1;
			fk.family = 6;
			fk.proto = ip6->nexthdr;
			__builtin_memcpy(fk.src, ip6->saddr, 16);
			__builtin_memcpy(fk.dst, ip6->daddr, 16);
			pseudo = sum16(ip6->saddr, 16) + sum16(ip6->daddr, 16);
		}
	} else {
		return count(HR_V_PASS_UNMANAGED, len, XDP_PASS);
	}

	if (cfg->max_len && len > cfg->max_len)
		return count(HR_V_PASS_TOO_BIG, len, XDP_PASS);

	if (!(cfg->flags & HR_CFG_FAST_PATH) || proto == ETH_P_ARP_)
		goto slow;
	if (!l4 || (fk.proto != IPPROTO_TCP && fk.proto != IPPROTO_UDP))
		FP_MISS(HR_FP_NOT_L4);
	if (fk.family == 4 && fk.proto == IPPROTO_UDP && cfg->local_ip4 &&
	    *(__u32 *)fk.dst == cfg->local_ip4) {
		/* Encapsulated by a VIP owner? Validated as the workers do; any
		 * doubt goes to them (they count what they refuse). */
		struct udp_min_ *udp = l4;
		struct hr_hdr_ *hr = (void *)(udp + 1);
		struct ipv4_min_ *oip = l3;
		struct ipv4_min_ *iip = (void *)(hr + 1);

		if ((void *)(iip + 1) > data_end || udp->dest != cfg->encap_port)
			goto not_encap;
		if (len > head_len || oip->vihl != 0x45 || ip_checksum(oip) != 0 ||
		    !bpf_map_lookup_elem(&peers, &oip->saddr))
			FP_MISS(HR_FP_NOT_L4);
		__u32 inner_len = l3_len - 20 - 16;

		if (bpf_ntohs(udp->len) != l3_len - 20 || hr->magic != HR_MAGIC_ ||
		    (hr->version >> 4) != 1 || iip->vihl != 0x45 ||
		    bpf_ntohs(iip->tot_len) != inner_len ||
		    (iip->frag & bpf_htons(0x3fff)) ||
		    (iip->proto != IPPROTO_TCP && iip->proto != IPPROTO_UDP) ||
		    inner_len > cfg->egress_mtu)
			FP_MISS(HR_FP_NOT_L4);
		__u16 *iports = (void *)(iip + 1);

		if ((void *)(iports + 2) > data_end)
			FP_MISS(HR_FP_NOT_L4);
		struct hr_flow_key ik = {};

		ik.family = 4;
		ik.proto = iip->proto;
		ik.vlan = fk.vlan;
		__builtin_memcpy(ik.src, &iip->saddr, 4);
		__builtin_memcpy(ik.dst, &iip->daddr, 4);
		ik.sport = iports[0];
		ik.dport = iports[1];
		struct hr_flow_entry *e = bpf_map_lookup_elem(&flows, &ik);

		if (!e)
			FP_MISS(HR_FP_NO_ENTRY);
		if (e->gen != cfg->fp_gen || e->action != HR_FP_DECAP || e->job >= HR_MAX_JOBS)
			FP_MISS(HR_FP_STALE);
		/* The frame for the host: its MAC, the owner's as source, the
		 * outer frame's VLAN tags, right in front of the inner packet. */
		__u32 eth_len = l3 - data;
		__u8 hdr[22];

		if (eth_len != 14 && eth_len != 18 && eth_len != 22)
			FP_MISS(HR_FP_NOT_L4);
		if (data + 22 > data_end)
			FP_MISS(HR_FP_NOT_L4);
		__builtin_memcpy(hdr, cfg->host_mac, 6);
		__builtin_memcpy(hdr + 6, data + 6, 6);
		__builtin_memcpy(hdr + 12, data + 12, 10);
		if (bpf_xdp_adjust_head(ctx, HR_ENCAP_OVERHEAD))
			FP_MISS(HR_FP_NOT_L4);
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		if (data + 22 > data_end)
			return count(HR_V_PASS_MALFORMED, len, XDP_DROP);
		/* Exactly eth_len bytes: the inner IP header follows. */
		__builtin_memcpy(data, hdr, 12);
		if (eth_len >= 18)
			__builtin_memcpy(data + 12, hdr + 12, 4);
		if (eth_len == 22)
			__builtin_memcpy(data + 16, hdr + 16, 4);
		set_ethertype_ip(data, data_end, eth_len);
		e->last_seen_ns = bpf_ktime_get_ns();
		count_map(&job_stats, e->job, len - HR_ENCAP_OVERHEAD);
		count_map(&fp_stats, HR_FP_DECAPSULATED, len - HR_ENCAP_OVERHEAD);
		count(HR_V_FAST_FORWARD, len, XDP_PASS);
		return bpf_redirect_map(&tx_port, 0, XDP_PASS);
	}
not_encap:
	if (len > head_len || l3_len > cfg->egress_mtu)
		FP_MISS(HR_FP_SIZE);
	{
		/* Ports, and the checksum field: TCP's at 16, UDP's at 6. */
		__u16 *ports = l4;

		if (fk.proto == IPPROTO_TCP) {
			if (l4 + 20 > data_end)
				FP_MISS(HR_FP_NOT_L4);
			if (*(__u8 *)(l4 + 13) & 0x02)
				FP_MISS(HR_FP_NEW_CONNECTION);
			field = l4 + 16;
		} else {
			if (l4 + 8 > data_end)
				FP_MISS(HR_FP_NOT_L4);
			field = l4 + 6;
		}
		fk.sport = ports[0];
		fk.dport = ports[1];
	}
	{
		struct hr_flow_entry *e = bpf_map_lookup_elem(&flows, &fk);

		if (!e)
			FP_MISS(HR_FP_NO_ENTRY);
		if (e->gen != cfg->fp_gen || e->job >= HR_MAX_JOBS ||
		    (e->action != HR_FP_FORWARD && e->action != HR_FP_ENCAP))
			FP_MISS(HR_FP_STALE);
		if (e->action == HR_FP_ENCAP &&
		    (fk.family != 4 || l3_len + HR_ENCAP_OVERHEAD > cfg->underlay_mtu))
			FP_MISS(HR_FP_SIZE);
		if ((cfg->flags & HR_CFG_COMPLETE_CSUM) &&
		    is_partial(pseudo, l4_len, fk.proto, *field)) {
			if (complete_csum(ctx, l4 - data, l4_len, field,
					  fk.proto == IPPROTO_UDP))
				FP_MISS(HR_FP_PARTIAL_CSUM);
			count_map(&fp_stats, HR_FP_CSUM_COMPLETED, len);
		}
		e->last_seen_ns = bpf_ktime_get_ns();
		if (e->action == HR_FP_ENCAP) {
			/* The serving node accounts the flow in its job; the owner
			 * counts what it encapsulated. */
			struct hr_flow_entry copy = *e;

			if (encapsulate(ctx, &copy, l3 - data, l3_len))
				return count(HR_V_PASS_MALFORMED, len, XDP_DROP);
			count_map(&fp_stats, HR_FP_ENCAPSULATED, len);
			count(HR_V_FAST_FORWARD, len, XDP_PASS);
			return bpf_redirect_map(&tx_port, 1, XDP_PASS);
		}
		count_map(&job_stats, e->job, len);
		count(HR_V_FAST_FORWARD, len, XDP_PASS);
		/* A redirect that fails (the peer cannot take XDP frames)
		 * drops the frame: the daemon watches the interface's
		 * xdp_xmit_errors and turns the fast path off if they grow. */
		return bpf_redirect_map(&tx_port, 0, XDP_PASS);
	}

slow:;
	__u32 q = ctx->rx_queue_index;

	if (!bpf_map_lookup_elem(&xsks, &q))
		return count(HR_V_PASS_NO_XSK, len, XDP_PASS);
	count(len > head_len ? HR_V_REDIRECT_MULTI : HR_V_REDIRECT, len, XDP_PASS);
	return bpf_redirect_map(&xsks, q, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
