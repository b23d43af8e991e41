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
//! written into caller buffers. Frames are read with the shared packet views
//! at the offset the pipeline's one parse found ([`FrameInfo`]), so
//! 802.1Q/802.1ad-tagged ARP is handled like untagged ARP; answers carry the
//! request's VLAN tags.

use std::net::Ipv4Addr;

use thiserror::Error;

use crate::packet::{
    arp::{op, ArpPacket, ArpRepr, ARP_LEN},
    ethernet::{ethertype, EthernetAddress, EthernetFrame, EthernetRepr},
    FrameInfo, L3Kind, Layer, ParseError,
};
use crate::worker::Side;

/// Length of emitted frames: minimum Ethernet frame without FCS (zero padded).
pub const FRAME_LEN: usize = 60;
/// ARP request opcode.
pub const OP_REQUEST: u16 = op::REQUEST;
/// ARP reply opcode.
pub const OP_REPLY: u16 = op::REPLY;
/// Most VIP addresses one interceptor tracks.
pub const MAX_VIPS: usize = 1024;
/// Broadcast MAC.
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// Interceptor configuration errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ArpError {
    /// More than [`MAX_VIPS`] VIP addresses configured.
    #[error("too many VIP addresses")]
    TooManyVips,
}

/// An ARP frame: its Ethernet header (VLAN tags included) and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpMessage {
    /// The Ethernet header.
    pub eth: EthernetRepr,
    /// The ARP message.
    pub arp: ArpRepr,
}

impl ArpMessage {
    /// Reads the ARP frame the parse found at `info.l3_offset`.
    pub fn read(frame: &[u8], info: &FrameInfo) -> Option<Self> {
        if info.kind != L3Kind::Arp {
            return None;
        }
        let eth = EthernetRepr::parse(&EthernetFrame::new_checked(frame).ok()?);
        let p = ArpPacket::new_checked(frame.get(info.l3_offset as usize..)?).ok()?;
        Some(Self {
            eth,
            arp: ArpRepr::parse(&p),
        })
    }

    /// Writes the frame into `out`, zero padded to [`FRAME_LEN`]; returns
    /// its length.
    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        let h = self.eth.emit(out).ok()?;
        let end = h + ARP_LEN;
        self.arp.emit(out.get_mut(h..end)?).ok()?;
        let len = end.max(FRAME_LEN);
        out.get_mut(end..len)?.fill(0);
        Some(len)
    }
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

    /// One frame of `side` with its parse: `None` if it is not ARP (the
    /// rest of the pipeline handles it), else what to do with it. `out`
    /// receives the frame to send when the verdict is [`Verdict::Reply`].
    pub fn on_frame(
        &mut self,
        side: Side,
        frame: &[u8],
        parsed: Result<&FrameInfo, &ParseError>,
        out: &mut [u8],
    ) -> Option<Verdict> {
        let info = match parsed {
            Ok(i) if i.kind == L3Kind::Arp => i,
            Ok(_) => return None,
            // An ARP frame (or runt) we cannot interpret: from the wire it
            // must not let the host stack guess; from the host it goes on.
            Err(e) if e.layer() == Layer::Arp && side == Side::Outer => {
                self.stats.malformed += 1;
                return Some(Verdict::Drop(DropReason::Malformed));
            }
            Err(_) => return None,
        };
        let msg = ArpMessage::read(frame, info)?;
        Some(match side {
            Side::Outer => self.on_outer(&msg, out),
            Side::Inner => self.on_inner(&msg, out),
        })
    }

    /// An ARP message received from the wire.
    fn on_outer(&mut self, m: &ArpMessage, out: &mut [u8]) -> Verdict {
        let a = &m.arp;
        if a.operation != OP_REQUEST && a.operation != OP_REPLY {
            self.stats.malformed += 1;
            return Verdict::Drop(DropReason::Malformed);
        }
        let (spa, tpa) = (a.sender_ip, a.target_ip);
        if a.operation == OP_REQUEST && spa != tpa {
            if let Some(v) = self.vip(tpa) {
                if v.owner {
                    let me = EthernetAddress(self.cfg.mac);
                    let reply = ArpMessage {
                        eth: EthernetRepr {
                            dst: a.sender_hw,
                            src: me,
                            ..m.eth
                        },
                        arp: a.reply(me),
                    };
                    if let Some(n) = reply.emit(out) {
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

    /// An ARP message the host stack is sending out.
    fn on_inner(&mut self, m: &ArpMessage, out: &mut [u8]) -> Verdict {
        let a = &m.arp;
        let spa = a.sender_ip;
        if self.vip(spa).is_none() {
            return Verdict::Forward;
        }
        let tpa = a.target_ip;
        if a.operation == OP_REQUEST && tpa != spa && self.vip(tpa).is_none() {
            if let Some(host_ip) = self.cfg.host_ip {
                let req = ArpMessage {
                    arp: ArpRepr {
                        sender_ip: host_ip,
                        ..*a
                    },
                    ..*m
                };
                if let Some(n) = req.emit(out) {
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
        let (operation, tha) = if k % 2 == 0 {
            (OP_REQUEST, [0u8; 6])
        } else {
            (OP_REPLY, mac)
        };
        let f = ArpMessage {
            eth: EthernetRepr::new(
                EthernetAddress(BROADCAST),
                EthernetAddress(mac),
                ethertype::ARP,
            ),
            arp: ArpRepr {
                operation,
                sender_hw: EthernetAddress(mac),
                sender_ip: v.ip,
                target_hw: EthernetAddress(tha),
                target_ip: v.ip,
            },
        };
        v.remaining -= 1;
        v.next_ns = now_ns.saturating_add(spacing);
        let n = f.emit(out)?;
        self.stats.announced += 1;
        Some(n)
    }
}

#[cfg(test)]
mod tests;
