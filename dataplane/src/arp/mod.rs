//! ARP interceptor: keeps the network's view of each VIP pointing at exactly
//! one server (the VIP owner) although every member has the VIP on its host
//! stack.
//!
//! * Outer interface (frames from the wire): requests for a VIP are answered
//!   by Headroom itself on the owner (with the owner's outer MAC) and dropped
//!   on every other node; other ARP traffic about a VIP (announcements of
//!   the owner, replies) is dropped so host stacks never see a conflict.
//! * Inner interface (frames the host stack sends): anything that would teach
//!   the network a VIP location is dropped: replies and announcements with a
//!   VIP as sender. Requests the host sends with a VIP as sender address
//!   (a neighbour resolution) are rewritten to the node's own address when
//!   one is configured, else dropped. This applies on the owner too: its
//!   answers come from Headroom with one consistent MAC.
//! * When a node becomes owner it announces the VIP with a configurable
//!   number of gratuitous ARPs, spaced in time ([`ArpInterceptor::poll_announce`]).
//!
//! Hosts should also set `arp_ignore=1` / `arp_announce=2` with the VIP on
//! `lo` so the kernel itself rarely emits VIP ARP in the first place.
//!
//! All functions are pure state machines: time is a parameter and frames are
//! written into caller buffers. 802.1Q-tagged frames are not handled (they
//! are forwarded unchanged).

use std::net::Ipv4Addr;

use thiserror::Error;

/// Ethernet header length.
pub const ETH_LEN: usize = 14;
/// ARP payload length for Ethernet/IPv4.
pub const ARP_LEN: usize = 28;
/// Length of emitted frames: minimum Ethernet frame without FCS (zero padded).
pub const FRAME_LEN: usize = 60;
/// ARP ethertype.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// ARP request opcode.
pub const OP_REQUEST: u16 = 1;
/// ARP reply opcode.
pub const OP_REPLY: u16 = 2;
/// Most VIP addresses one interceptor tracks.
pub const MAX_VIPS: usize = 1024;
/// Broadcast MAC.
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// ARP parse / emit failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ArpError {
    /// Frame shorter than Ethernet + ARP.
    #[error("truncated ARP frame")]
    Truncated,
    /// Ethertype is not ARP.
    #[error("not an ARP frame")]
    NotArp,
    /// Not Ethernet/IPv4 ARP (hardware/protocol type or address lengths).
    #[error("unsupported ARP hardware or protocol")]
    Unsupported,
    /// Opcode other than request or reply.
    #[error("unknown ARP opcode {0}")]
    BadOpcode(u16),
    /// Output buffer smaller than [`FRAME_LEN`].
    #[error("output buffer too small")]
    BufferTooSmall,
    /// More than [`MAX_VIPS`] VIP addresses configured.
    #[error("too many VIP addresses")]
    TooManyVips,
}

/// Checked read-only view of an Ethernet/IPv4 ARP frame.
#[derive(Debug, Clone, Copy)]
pub struct ArpFrame<'a> {
    buf: &'a [u8],
}

impl<'a> ArpFrame<'a> {
    /// Validates `frame` (starting at the Ethernet header); accessors cannot
    /// panic afterwards.
    pub fn new_checked(frame: &'a [u8]) -> Result<Self, ArpError> {
        if frame.len() < ETH_LEN {
            return Err(ArpError::Truncated);
        }
        if u16::from_be_bytes([frame[12], frame[13]]) != ETHERTYPE_ARP {
            return Err(ArpError::NotArp);
        }
        if frame.len() < ETH_LEN + ARP_LEN {
            return Err(ArpError::Truncated);
        }
        let a = &frame[ETH_LEN..];
        if a[0..2] != [0, 1] || a[2..4] != [0x08, 0x00] || a[4] != 6 || a[5] != 4 {
            return Err(ArpError::Unsupported);
        }
        let op = u16::from_be_bytes([a[6], a[7]]);
        if op != OP_REQUEST && op != OP_REPLY {
            return Err(ArpError::BadOpcode(op));
        }
        Ok(ArpFrame { buf: frame })
    }

    fn mac(&self, at: usize) -> [u8; 6] {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buf[at..at + 6]);
        m
    }

    fn ip(&self, at: usize) -> Ipv4Addr {
        Ipv4Addr::new(
            self.buf[at],
            self.buf[at + 1],
            self.buf[at + 2],
            self.buf[at + 3],
        )
    }

    /// Ethernet destination.
    pub fn eth_dst(&self) -> [u8; 6] {
        self.mac(0)
    }
    /// Ethernet source.
    pub fn eth_src(&self) -> [u8; 6] {
        self.mac(6)
    }
    /// Opcode ([`OP_REQUEST`] or [`OP_REPLY`]).
    pub fn oper(&self) -> u16 {
        u16::from_be_bytes([self.buf[ETH_LEN + 6], self.buf[ETH_LEN + 7]])
    }
    /// Sender hardware address.
    pub fn sha(&self) -> [u8; 6] {
        self.mac(ETH_LEN + 8)
    }
    /// Sender protocol address.
    pub fn spa(&self) -> Ipv4Addr {
        self.ip(ETH_LEN + 14)
    }
    /// Target hardware address.
    pub fn tha(&self) -> [u8; 6] {
        self.mac(ETH_LEN + 18)
    }
    /// Target protocol address.
    pub fn tpa(&self) -> Ipv4Addr {
        self.ip(ETH_LEN + 24)
    }
}

/// Fields of an ARP frame to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpFields {
    /// Ethernet destination.
    pub eth_dst: [u8; 6],
    /// Ethernet source.
    pub eth_src: [u8; 6],
    /// Opcode.
    pub oper: u16,
    /// Sender hardware address.
    pub sha: [u8; 6],
    /// Sender protocol address.
    pub spa: Ipv4Addr,
    /// Target hardware address.
    pub tha: [u8; 6],
    /// Target protocol address.
    pub tpa: Ipv4Addr,
}

/// Writes an Ethernet/IPv4 ARP frame of [`FRAME_LEN`] bytes (zero padded).
pub fn emit(f: &ArpFields, out: &mut [u8]) -> Result<usize, ArpError> {
    if out.len() < FRAME_LEN {
        return Err(ArpError::BufferTooSmall);
    }
    let o = &mut out[..FRAME_LEN];
    o[0..6].copy_from_slice(&f.eth_dst);
    o[6..12].copy_from_slice(&f.eth_src);
    o[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    o[14..20].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    o[20..22].copy_from_slice(&f.oper.to_be_bytes());
    o[22..28].copy_from_slice(&f.sha);
    o[28..32].copy_from_slice(&f.spa.octets());
    o[32..38].copy_from_slice(&f.tha);
    o[38..42].copy_from_slice(&f.tpa.octets());
    o[42..].fill(0);
    Ok(FRAME_LEN)
}

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// ARP about a VIP that must not reach the host stack or the network.
    Suppressed,
    /// Malformed ARP from the wire.
    Malformed,
}

/// Decision for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not ours: pass it on unchanged (to the host stack for outer frames,
    /// to the wire for inner frames).
    Forward,
    /// Drop the frame.
    Drop(DropReason),
    /// Drop the frame and transmit the `usize`-byte frame written into the
    /// output buffer on the outer interface (an ARP reply from the owner, or
    /// a host request rewritten to the node's own sender address).
    Reply(usize),
}

/// Interceptor settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpConfig {
    /// This node's MAC on the outer interface (used in answers and
    /// announcements).
    pub mac: [u8; 6],
    /// The node's own address, used as sender address when the host stack
    /// sends a request with a VIP as sender; `None` drops such requests.
    pub host_ip: Option<Ipv4Addr>,
    /// Interval between gratuitous ARPs of one announcement burst.
    pub announce_spacing_ns: u64,
}

/// Interceptor counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArpStats {
    /// Requests for an owned VIP answered by Headroom.
    pub answered: u64,
    /// Frames about a VIP from the wire dropped (requests on non-owners,
    /// announcements and replies of other nodes).
    pub suppressed_in: u64,
    /// Frames about a VIP from the host stack dropped.
    pub suppressed_out: u64,
    /// Host requests with a VIP as sender rewritten to the host address.
    pub rewritten: u64,
    /// Gratuitous ARPs emitted.
    pub announced: u64,
    /// Malformed ARP frames from the wire (dropped).
    pub malformed: u64,
    /// Ownership changes applied.
    pub ownership_changes: u64,
}

#[derive(Debug, Clone, Copy)]
struct VipState {
    ip: Ipv4Addr,
    owner: bool,
    burst: u32,
    remaining: u32,
    next_ns: u64,
}

/// ARP interceptor of one node.
#[derive(Debug)]
pub struct ArpInterceptor {
    cfg: ArpConfig,
    vips: Vec<VipState>,
    stats: ArpStats,
}

impl ArpInterceptor {
    /// Interceptor with no VIP.
    pub fn new(cfg: ArpConfig) -> Self {
        ArpInterceptor {
            cfg,
            vips: Vec::with_capacity(16),
            stats: ArpStats::default(),
        }
    }

    /// Sets the VIP addresses and their gratuitous ARP burst sizes (control
    /// thread). Ownership and pending announcements of addresses that stay
    /// are kept; new addresses start as not owned.
    pub fn set_vips(&mut self, vips: &[(Ipv4Addr, u32)]) -> Result<(), ArpError> {
        if vips.len() > MAX_VIPS {
            return Err(ArpError::TooManyVips);
        }
        let old = std::mem::take(&mut self.vips);
        for &(ip, burst) in vips {
            if self.vips.iter().any(|v| v.ip == ip) {
                continue;
            }
            let prev = old.iter().find(|v| v.ip == ip);
            self.vips.push(VipState {
                ip,
                owner: prev.is_some_and(|p| p.owner),
                burst,
                remaining: prev.map_or(0, |p| p.remaining.min(burst)),
                next_ns: prev.map_or(0, |p| p.next_ns),
            });
        }
        Ok(())
    }

    /// Counters.
    pub fn stats(&self) -> &ArpStats {
        &self.stats
    }

    fn vip(&self, ip: Ipv4Addr) -> Option<&VipState> {
        self.vips.iter().find(|v| v.ip == ip)
    }

    /// Whether this node currently owns `vip`.
    pub fn is_owner(&self, vip: Ipv4Addr) -> bool {
        self.vip(vip).is_some_and(|v| v.owner)
    }

    /// A frame received from the wire. `out` receives a reply when the
    /// verdict is [`Verdict::Reply`].
    pub fn on_outer_frame(&mut self, frame: &[u8], out: &mut [u8]) -> Verdict {
        let arp = match ArpFrame::new_checked(frame) {
            Ok(a) => a,
            Err(ArpError::NotArp) => return Verdict::Forward,
            Err(_) => {
                // An ARP frame (or a runt) we cannot interpret: do not let the
                // host stack guess.
                if frame.len() >= ETH_LEN && frame[12..14] == ETHERTYPE_ARP.to_be_bytes() {
                    self.stats.malformed += 1;
                    return Verdict::Drop(DropReason::Malformed);
                }
                return Verdict::Forward;
            }
        };
        let (spa, tpa) = (arp.spa(), arp.tpa());
        if arp.oper() == OP_REQUEST && spa != tpa {
            if let Some(v) = self.vip(tpa) {
                if v.owner {
                    let reply = ArpFields {
                        eth_dst: arp.sha(),
                        eth_src: self.cfg.mac,
                        oper: OP_REPLY,
                        sha: self.cfg.mac,
                        spa: tpa,
                        tha: arp.sha(),
                        tpa: spa,
                    };
                    if let Ok(n) = emit(&reply, out) {
                        self.stats.answered += 1;
                        return Verdict::Reply(n);
                    }
                }
                self.stats.suppressed_in += 1;
                return Verdict::Drop(DropReason::Suppressed);
            }
        }
        if self.vip(spa).is_some() || self.vip(tpa).is_some() {
            self.stats.suppressed_in += 1;
            return Verdict::Drop(DropReason::Suppressed);
        }
        Verdict::Forward
    }

    /// A frame the host stack is sending out. `out` receives a rewritten
    /// request when the verdict is [`Verdict::Reply`].
    pub fn on_inner_frame(&mut self, frame: &[u8], out: &mut [u8]) -> Verdict {
        let Ok(arp) = ArpFrame::new_checked(frame) else {
            return Verdict::Forward;
        };
        let spa = arp.spa();
        if self.vip(spa).is_none() {
            return Verdict::Forward;
        }
        let tpa = arp.tpa();
        if arp.oper() == OP_REQUEST && tpa != spa && self.vip(tpa).is_none() {
            if let Some(host_ip) = self.cfg.host_ip {
                let req = ArpFields {
                    eth_dst: arp.eth_dst(),
                    eth_src: arp.eth_src(),
                    oper: OP_REQUEST,
                    sha: arp.sha(),
                    spa: host_ip,
                    tha: arp.tha(),
                    tpa,
                };
                if let Ok(n) = emit(&req, out) {
                    self.stats.rewritten += 1;
                    return Verdict::Reply(n);
                }
            }
        }
        self.stats.suppressed_out += 1;
        Verdict::Drop(DropReason::Suppressed)
    }

    /// Applies an ownership change of `vip` decided by the control plane.
    /// Becoming owner schedules the VIP's gratuitous ARP burst starting at
    /// `now_ns`; losing it cancels pending announcements. Returns false if
    /// `vip` is not configured.
    pub fn on_ownership_change(&mut self, now_ns: u64, vip: Ipv4Addr, became_owner: bool) -> bool {
        let Some(v) = self.vips.iter_mut().find(|v| v.ip == vip) else {
            return false;
        };
        if v.owner != became_owner {
            self.stats.ownership_changes += 1;
        }
        v.owner = became_owner;
        if became_owner {
            v.remaining = v.burst;
            v.next_ns = now_ns;
        } else {
            v.remaining = 0;
        }
        true
    }

    /// Applies the set of VIP addresses this node owns now (from
    /// `DirectorTables::owned_vips` after each rebuild): every configured VIP
    /// whose ownership differs goes through
    /// [`ArpInterceptor::on_ownership_change`]. Returns the number of changes.
    pub fn sync_owned(&mut self, now_ns: u64, owned: &[Ipv4Addr]) -> usize {
        let mut changed = 0;
        for i in 0..self.vips.len() {
            let ip = self.vips[i].ip;
            let own = owned.contains(&ip);
            if self.vips[i].owner != own {
                self.on_ownership_change(now_ns, ip, own);
                changed += 1;
            }
        }
        changed
    }

    /// Earliest time an announcement is due, if any (for the loop's timer).
    pub fn next_announce_ns(&self) -> Option<u64> {
        self.vips
            .iter()
            .filter(|v| v.owner && v.remaining > 0)
            .map(|v| v.next_ns)
            .min()
    }

    /// Emits one due gratuitous ARP into `out` (call until `None`). The
    /// burst alternates the request form (RFC 5227 announcement) and the
    /// reply form, since some devices only learn from one of them.
    pub fn poll_announce(&mut self, now_ns: u64, out: &mut [u8]) -> Option<usize> {
        if out.len() < FRAME_LEN {
            return None;
        }
        let mac = self.cfg.mac;
        let spacing = self.cfg.announce_spacing_ns;
        let v = self
            .vips
            .iter_mut()
            .find(|v| v.owner && v.remaining > 0 && v.next_ns <= now_ns)?;
        let k = v.burst - v.remaining;
        let (oper, tha) = if k % 2 == 0 {
            (OP_REQUEST, [0u8; 6])
        } else {
            (OP_REPLY, mac)
        };
        let f = ArpFields {
            eth_dst: BROADCAST,
            eth_src: mac,
            oper,
            sha: mac,
            spa: v.ip,
            tha,
            tpa: v.ip,
        };
        v.remaining -= 1;
        v.next_ns = now_ns.saturating_add(spacing);
        let n = emit(&f, out).ok()?;
        self.stats.announced += 1;
        Some(n)
    }
}

#[cfg(test)]
mod tests;
