/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Shared layouts between the Headroom packet generator / sink XDP programs
 * and their user-space loaders (perf/src/bpf.rs mirrors these structs).
 */
#ifndef PKTGEN_H
#define PKTGEN_H

#include <linux/types.h>

#define PG_MAGIC 0x4852 /* "HR" */
#define PG_TMPL_LEN 128
#define PG_HIST_BUCKETS 512
#define PG_MAX_FLOWS 65536

/* Generator configuration (one entry, written before the first run). */
struct pg_config {
	__u8 tmpl[PG_TMPL_LEN]; /* first bytes of the frame, rewritten every run */
	__u32 proto;            /* 17 = UDP, 6 = TCP */
	__u32 ip_min;           /* source IPv4 range start, host order */
	__u32 ip_cnt;
	__u32 port_min;         /* source port range start, host order */
	__u32 port_cnt;
	__u32 flow_base;        /* first flow id this generator instance owns */
	__u32 flow_count;       /* number of flows this instance owns (>= 1) */
	__u32 total_flows;      /* size of the 5-tuple space (ip_cnt * port_cnt) */
	__u32 ip_sum;           /* one's complement partial sum of the IPv4 header, variable fields zero */
	__u32 l4_sum;           /* same for the L4 checksum (pseudo header included) */
	__u32 tcp_seq_base;     /* TCP sequence number of seq 0 */
	__u32 tcp_seq_step;     /* TCP payload length */
	__u32 redirect_ifindex; /* 0: XDP_TX out of the device, else bpf_redirect() target */
	__u32 pad;
	__u64 interval_fp;      /* pacing: ns between frames << 10, 0 = unpaced */
	__u64 max_lag_fp;       /* pacing: how far behind schedule may be caught up (<< 10) */
	__u64 max_frames;       /* stop building frames after this many, 0 = no limit */
};

/* Generator state: number of frames built so far. */
struct pg_state {
	__u64 counter;
	__u64 start_ns; /* pacing: time of the first run */
	__u64 next_fp;  /* pacing: when the next frame is due, (ns since start) << 10 */
	__u64 first_ns; /* send time of the first frame */
	__u64 last_ns;  /* send time of the latest frame */
};

/* Sink modes. */
#define PG_SINK_XSK 0   /* redirect every frame to the AF_XDP socket of its queue */
#define PG_SINK_COUNT 1 /* validate and account in the kernel, then drop */

struct pg_sink_config {
	__u32 mode;
	__u32 fallback; /* XDP action when no socket is bound (XDP_DROP / XDP_PASS) */
};

/* Sink counters (PG_SINK_COUNT mode), summed over CPUs by user space. */
struct pg_sink_stats {
	__u64 rx;       /* frames seen */
	__u64 valid;    /* frames carrying the generator magic */
	__u64 bytes;    /* bytes of valid frames */
	__u64 late;     /* valid frames whose seq was not above the flow's highest (reordered or duplicate) */
	__u64 first_ns; /* receive time of the first valid frame */
	__u64 last_ns;  /* receive time of the last valid frame */
};

/* Per-flow sink state (PG_SINK_COUNT mode). */
struct pg_flow_state {
	__u64 next_seq; /* highest extended sequence seen + 1, 0 = none yet */
	__u64 received;
};

#endif
