/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Types shared between the XDP program (headroom.bpf.c) and the daemon.
 * The Rust mirror lives in dataplane/src/xdp/abi.rs; a unit test checks
 * both layouts against the BTF the skeleton is generated from.
 */
#ifndef HEADROOM_H
#define HEADROOM_H

/* Maximum number of receive queues per interface that can be steered. */
#define HR_MAX_QUEUES 64

/* Verdict counter slots (index into the per-CPU `verdicts` array). */
enum hr_verdict {
	/* Redirected to the AF_XDP socket of the receive queue. */
	HR_V_REDIRECT = 0,
	/* Addressed to the node's own stack (gossip, management): XDP_PASS. */
	HR_V_PASS_LOCAL = 1,
	/* Not a protocol Headroom manages (e.g. LLDP, STP): XDP_PASS. */
	HR_V_PASS_UNMANAGED = 2,
	/* Managed, but no socket is bound on this queue: XDP_PASS (fail open). */
	HR_V_PASS_NO_XSK = 3,
	/* Frame too short for the headers it announces: XDP_PASS, counted. */
	HR_V_PASS_MALFORMED = 4,
	/* Steering disabled in the config map (start-up, shutdown): XDP_PASS. */
	HR_V_PASS_DISABLED = 5,
	/* A multi-buffer frame (jumbo or aggregate) redirected to the socket. */
	HR_V_REDIRECT_MULTI = 6,
	/* Longer than the workers take (hr_xdp_config.max_len): XDP_PASS, so
	 * the kernel path carries it; counted so it never goes unnoticed. */
	HR_V_PASS_TOO_BIG = 7,
	/* Forwarded by the fast path (a decided flow): XDP_REDIRECT to the
	 * other interface, the workers never see it. */
	HR_V_FAST_FORWARD = 8,
	HR_V_MAX = 16,
};

/* One verdict slot: packets and bytes, per CPU. */
struct hr_counter {
	__u64 packets;
	__u64 bytes;
};

/* Most jobs the fast path accounts (job ids beyond stay on the slow path). */
#define HR_MAX_JOBS 4096

/* Fast-path counters (per-CPU `fp_stats`): why a managed frame did not take
 * the fast path, and what the fast path did besides forwarding. */
enum hr_fp_stat {
	/* No entry for the flow (new, expired, or never eligible). */
	HR_FP_NO_ENTRY = 0,
	/* The entry is from an older rule set or membership: re-decide. */
	HR_FP_STALE = 1,
	/* The L4 checksum is partial and could not be completed here. */
	HR_FP_PARTIAL_CSUM = 2,
	/* Multi-buffer or longer than the egress MTU. */
	HR_FP_SIZE = 3,
	/* Not TCP/UDP over IPv4 or IPv6 without extension headers. */
	HR_FP_NOT_L4 = 4,
	/* Not a miss: partial checksums the fast path completed. */
	HR_FP_CSUM_COMPLETED = 5,
	/* Not a miss: frames the fast path encapsulated (VIP owner). */
	HR_FP_ENCAPSULATED = 6,
	/* Not a miss: frames the fast path decapsulated (serving node). */
	HR_FP_DECAPSULATED = 7,
	/* A TCP SYN: new connections are always placed and classified by the
	 * workers (a reused 4-tuple may belong to another job or server now). */
	HR_FP_NEW_CONNECTION = 8,
	HR_FP_STAT_MAX = 16,
};

/* A flow as the fast path keys it (addresses and ports in network order). */
struct hr_flow_key {
	/* Addresses: IPv4 in the first 4 bytes, the rest zero. */
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	/* 4 or 6. */
	__u8 family;
	/* VID of the outermost VLAN tag, 0 if untagged. */
	__u16 vlan;
};

/* Fast-path actions (hr_flow_entry.action). */
/* Forward to the other interface unchanged. */
#define HR_FP_FORWARD 1
/* VIP owner: encapsulate towards the serving node and send back out of
 * the interface it came in by (hr_flow_entry.encap). */
#define HR_FP_ENCAP 2
/* Serving node: the key is the inner flow of encapsulated frames from a
 * pool node; strip the outer headers and forward to the host. */
#define HR_FP_DECAP 3

/* Outer headers of HR_FP_ENCAP (see dataplane/src/director/encap.rs). */
struct hr_encap {
	__u8 dst_mac[6];
	__u8 src_mac[6];
	/* Underlay addresses, network byte order. */
	__u32 src_ip;
	__u32 dst_ip;
	/* UDP source port (flow entropy) and destination port, network order. */
	__u16 sport;
	__u16 dport;
	/* Headroom header fields, network order. */
	__u16 service;
	__u16 _pad;
	__u32 origin;
};

/* What the fast path does with a decided flow (written by the workers). */
struct hr_flow_entry {
	/* hr_xdp_config.fp_gen the decision was made under. */
	__u32 gen;
	/* Job the flow belongs to (< HR_MAX_JOBS). */
	__u16 job;
	/* HR_FP_* action. */
	__u8 action;
	__u8 flags;
	/* Last packet the fast path took, CLOCK_MONOTONIC ns (the workers'
	 * idle expiry reads it). */
	__u64 last_seen_ns;
	/* HR_FP_ENCAP: the outer headers. */
	struct hr_encap encap;
};

/* Flags in hr_xdp_config.flags. */
#define HR_CFG_ENABLED (1U << 0)
/* Every frame to or from node_ip4 bypasses the workers (a dedicated node
 * address). Without it only the exchange's UDP (node_ip4:exchange_port)
 * does, so the node address may also be the host stack's own. */
#define HR_CFG_BYPASS_ADDRESS (1U << 1)
/* Decided flows take the fast path. */
#define HR_CFG_FAST_PATH (1U << 2)
/* Frames received here can carry partial checksums (a veth from a local
 * stack): the fast path completes them before forwarding. */
#define HR_CFG_COMPLETE_CSUM (1U << 3)

/* The program's single configuration entry (array map `hr_config`, key 0). */
struct hr_xdp_config {
	/* HR_CFG_* flags. */
	__u32 flags;
	/* The node's own IPv4 address (network byte order), or 0: frames to it
	 * bypass the workers (see HR_CFG_BYPASS_ADDRESS). */
	__u32 node_ip4;
	/* UDP port of the information exchange (network byte order), or 0. */
	__u16 exchange_port;
	__u16 _pad;
	/* Largest frame (all buffers) the workers take, bytes; 0 = no limit. */
	__u32 max_len;
	/* Generation of the workers' decisions: entries of another one are
	 * stale (bumped on reload and membership changes). */
	__u32 fp_gen;
	/* MTU of the interface fast-path frames leave by (larger ones go to the
	 * workers, which segment or count them). */
	__u32 egress_mtu;
	/* Underlay MTU: largest encapsulated IP packet. */
	__u32 underlay_mtu;
	/* This node's underlay address (network order) and the encapsulation
	 * UDP port (network order): frames to it are decapsulated. */
	__u32 local_ip4;
	__u16 encap_port;
	/* MAC of the host stack behind `inner` (decapsulated frames go to it). */
	__u8 host_mac[6];
};

#endif
