// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Headroom packet sink / raw AF_XDP forwarder XDP program.
 *
 * PG_SINK_XSK: every frame goes to the AF_XDP socket bound to its receive
 * queue (xsks map); without a socket the configured fallback action applies.
 * PG_SINK_COUNT: frames are validated (generator magic), accounted (per-flow
 * highest sequence and count, late frames, latency histogram from the
 * CLOCK_MONOTONIC send time in the payload) and dropped in the kernel, for
 * rates an AF_XDP copy-mode receiver cannot take.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "pktgen.h"

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pg_sink_config);
} sink_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pg_sink_stats);
} sink_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PG_HIST_BUCKETS);
	__type(key, __u32);
	__type(value, __u64);
} sink_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PG_MAX_FLOWS);
	__type(key, __u32);
	__type(value, struct pg_flow_state);
} sink_flows SEC(".maps");

static __always_inline __u32 ilog2_u64(__u64 v)
{
	__u32 r = 0;
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { r += 1; }
	return r;
}

/* Log-linear bucket, 8 sub-buckets per power of two (perf/src/hist.rs). */
static __always_inline __u32 bucket(__u64 v)
{
	if (v < 8)
		return (__u32)v;
	__u32 b = ilog2_u64(v);
	return (b - 2) * 8 + (__u32)((v >> (b - 3)) & 7);
}

static __always_inline int count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 k = 0;
	struct pg_sink_stats *st = bpf_map_lookup_elem(&sink_stats, &k);
	if (!st)
		return XDP_DROP;
	st->rx++;
	__u8 *b = data;
	if (data + 58 > end)
		return XDP_DROP;
	if (*(__u16 *)(b + 12) != bpf_htons(ETH_P_IP) || b[14] != 0x45)
		return XDP_DROP;
	__u32 pl;
	if (b[23] == IPPROTO_UDP)
		pl = 42;
	else if (b[23] == IPPROTO_TCP)
		pl = 54;
	else
		return XDP_DROP;
	if (data + pl + 16 > end)
		return XDP_DROP;
	__u8 *p = b + pl;
	if (*(__u16 *)p != PG_MAGIC)
		return XDP_DROP;
	__u32 flow = *(__u16 *)(p + 2);
	__u32 seq = *(__u32 *)(p + 4);
	__u64 ts = *(__u64 *)(p + 8);
	__u64 now = bpf_ktime_get_ns();

	st->valid++;
	st->bytes += (__u64)(end - data);
	if (!st->first_ns)
		st->first_ns = now;
	st->last_ns = now;

	struct pg_flow_state *fs = bpf_map_lookup_elem(&sink_flows, &flow);
	if (fs) {
		fs->received++;
		if ((__u64)seq + 1 > fs->next_seq)
			fs->next_seq = (__u64)seq + 1;
		else
			st->late++;
	}
	__u32 bk = bucket(now > ts ? now - ts : 0);
	if (bk >= PG_HIST_BUCKETS)
		bk = PG_HIST_BUCKETS - 1;
	__u64 *h = bpf_map_lookup_elem(&sink_hist, &bk);
	if (h)
		(*h)++;
	return XDP_DROP;
}

SEC("xdp")
int pktgen_sink_xdp(struct xdp_md *ctx)
{
	__u32 k = 0;
	struct pg_sink_config *c = bpf_map_lookup_elem(&sink_cfg, &k);
	if (!c)
		return XDP_PASS;
	if (c->mode == PG_SINK_COUNT)
		return count(ctx);
	return bpf_redirect_map(&xsks, ctx->rx_queue_index, c->fallback);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
