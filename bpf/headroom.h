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
	HR_V_MAX = 8,
};

/* One verdict slot: packets and bytes, per CPU. */
struct hr_counter {
	__u64 packets;
	__u64 bytes;
};

/* Flags in hr_xdp_config.flags. */
#define HR_CFG_ENABLED (1U << 0)

/* The program's single configuration entry (array map `hr_config`, key 0). */
struct hr_xdp_config {
	/* HR_CFG_* flags. */
	__u32 flags;
	/* The node's own IPv4 address (network byte order), or 0: frames to it
	 * (and ARP asking for it) go to the kernel stack, not to the workers. */
	__u32 node_ip4;
};

#endif
