// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Headroom packet generator, XDP live-frames engine.
 *
 * Run with BPF_PROG_RUN and BPF_F_TEST_XDP_LIVE_FRAMES: the kernel recycles
 * frames from a page pool without copying the template again, and a receiver
 * may have rewritten them, so every run rewrites all headers and the
 * measurement payload from the template (the first 72 bytes at most: padding
 * behind the payload is never touched by a forwarder), then fills in the
 * per-frame fields: source address and port of the flow, TCP sequence number,
 * payload flow id, sequence number and CLOCK_MONOTONIC send time, checksums.
 * XDP_TX sends the frame out of the device the test runs on (ingress_ifindex
 * of the context); a non-zero redirect_ifindex redirects it elsewhere.
 *
 * Pacing happens here rather than between BPF_PROG_RUN calls (each call
 * waits on RCU, so calls must be large): a run that comes before the next
 * frame is due returns XDP_DROP at once, which only recycles the frame.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "pktgen.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pg_config);
} pg_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pg_state);
} pg_state SEC(".maps");

static __always_inline __u32 add16(__u32 sum, const void *p)
{
	return sum + *(const __u16 *)p;
}

static __always_inline __u16 fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

SEC("xdp")
int pktgen_xdp(struct xdp_md *ctx)
{
	__u32 k = 0;
	struct pg_config *c = bpf_map_lookup_elem(&pg_cfg, &k);
	struct pg_state *s = bpf_map_lookup_elem(&pg_state, &k);
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	if (!c || !s)
		return XDP_ABORTED;
	if (c->max_frames && s->counter >= c->max_frames)
		return XDP_DROP;
	if (c->interval_fp) {
		__u64 t = bpf_ktime_get_ns();
		if (!s->start_ns)
			s->start_ns = t;
		__u64 rel = (t - s->start_ns) << 10;
		if (rel < s->next_fp)
			return XDP_DROP;
		if (rel - s->next_fp > c->max_lag_fp)
			s->next_fp = rel - c->max_lag_fp;
		s->next_fp += c->interval_fp;
	}
	if (data + 60 > end)
		return XDP_ABORTED;

	__u32 *d = data;
	const __u32 *t = (const __u32 *)c->tmpl;
#pragma unroll
	for (int i = 0; i < 15; i++)
		d[i] = t[i];
	if (data + 64 <= end)
		d[15] = t[15];
	if (data + 72 <= end) {
		d[16] = t[16];
		d[17] = t[17];
	}

	__u32 fc = c->flow_count ? c->flow_count : 1;
	__u32 tf = c->total_flows ? c->total_flows : 1;
	__u32 ic = c->ip_cnt ? c->ip_cnt : 1;
	__u32 pc = c->port_cnt ? c->port_cnt : 1;
	__u64 n = s->counter++;
	__u32 local = n % fc;
	__u32 seq = n / fc;
	__u32 flow = c->flow_base + local;
	__u32 g = flow % tf;
	__u32 ip = c->ip_min + g % ic;
	__u32 port = c->port_min + (g / ic) % pc;
	__u64 now = bpf_ktime_get_ns();
	if (!s->first_ns)
		s->first_ns = now;
	s->last_ns = now;

	__u8 *b = data;
	*(__u32 *)(b + 26) = bpf_htonl(ip);
	*(__u16 *)(b + 34) = bpf_htons((__u16)port);

	__u32 l4sum = c->l4_sum;
	if (c->proto == 6) {
		if (data + 70 > end)
			return XDP_ABORTED;
		*(__u32 *)(b + 38) = bpf_htonl(c->tcp_seq_base + seq * c->tcp_seq_step);
		l4sum = add16(l4sum, b + 38);
		l4sum = add16(l4sum, b + 40);
		*(__u16 *)(b + 54 + 2) = (__u16)flow;
		*(__u32 *)(b + 54 + 4) = seq;
		*(__u64 *)(b + 54 + 8) = now;
#pragma unroll
		for (int i = 0; i < 14; i += 2)
			l4sum = add16(l4sum, b + 56 + i);
	} else {
		*(__u16 *)(b + 42 + 2) = (__u16)flow;
		*(__u32 *)(b + 42 + 4) = seq;
		*(__u64 *)(b + 42 + 8) = now;
#pragma unroll
		for (int i = 0; i < 14; i += 2)
			l4sum = add16(l4sum, b + 44 + i);
	}

	/* source address is in the IPv4 header and the pseudo header */
	__u32 ipsum = add16(add16(c->ip_sum, b + 26), b + 28);
	*(__u16 *)(b + 24) = fold(ipsum);
	l4sum = add16(add16(l4sum, b + 26), b + 28);
	l4sum = add16(l4sum, b + 34);
	__u16 l4 = fold(l4sum);
	if (c->proto == 6) {
		*(__u16 *)(b + 50) = l4;
	} else {
		*(__u16 *)(b + 40) = l4 ? l4 : 0xffff;
	}

	if (c->redirect_ifindex)
		return bpf_redirect(c->redirect_ifindex, 0);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
