//! The daemon's side of the XDP fast path: in which directions it may run,
//! the decision generation that invalidates entries on reload, and the watch
//! on redirect errors that turns a direction off rather than lose frames.
//!
//! A fast-path frame leaves by `bpf_redirect_map` to the other interface. A
//! NIC driver with XDP support transmits it; a veth hands it to its peer,
//! which takes XDP frames only with GRO or an XDP program on: otherwise the
//! kernel drops the frame and counts `xdp_xmit_errors` on the veth. "auto"
//! therefore turns a direction on only where the target is known to take
//! them, and every direction that is on is watched.

use std::{
    cell::{Cell, RefCell},
    time::Duration,
};

use headroom_clock::Timestamp;

use headroom_config::FastPath as Mode;
use headroom_dataplane::xdp::{fastpath, netdev::Netdev};

/// One direction: frames received on one interface, leaving by the other.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Direction {
    /// Fast path on for frames received on this interface.
    pub on: bool,
    /// Why it is off, for status and the log (empty when on).
    pub reason: String,
    /// Redirect errors counted on the target when last checked.
    errors_seen: u64,
    /// Entries in the table at the last sweep, and idle ones removed so far.
    pub entries: u64,
    /// Idle entries removed by sweeps since start.
    pub expired: u64,
}

/// Fast-path state of the dataplane (control thread only).
#[derive(Debug)]
pub struct FastPathCtl {
    dirs: RefCell<[Direction; 2]>,
    /// Rule sets applied since start (reloads).
    rules: Cell<u64>,
    /// Generation of the director tables the workers follow (0: none).
    tables: Cell<u64>,
    /// (source, target) interface names per direction.
    devs: [(String, String); 2],
    /// AF_XDP drops per receiving side when last checked.
    xsk_seen: Cell<[u64; 2]>,
    /// When the tables are walked next for idle entries.
    next_sweep: Cell<Option<Timestamp>>,
}

/// Frames the kernel failed to redirect from `source` to `target`: a veth
/// target counts `*_xdp_xmit_errors`, and a veth source counts a failed
/// redirect among its `rx_queue_*_drops` (so does a full AF_XDP ring: the
/// caller discounts those). 0 for drivers that count neither.
fn redirect_errors(source: &str, target: &str) -> u64 {
    let sum = |dev: &str, f: &dyn Fn(&str) -> bool| -> u64 {
        Netdev::stats(dev)
            .map(|s| s.iter().filter(|(k, _)| f(k)).map(|(_, v)| *v).sum())
            .unwrap_or(0)
    };
    sum(target, &|k| k.ends_with("xdp_xmit_errors"))
        + sum(source, &|k| {
            k.starts_with("rx_queue_") && k.ends_with("_drops") && !k.ends_with("xdp_drops")
        })
}

/// Whether `target` takes XDP frames redirected to it, and if not why.
fn takes_xdp_frames(target: &Netdev) -> Result<(), String> {
    if target.driver != "veth" {
        return Ok(());
    }
    match target.veth_peer_here() {
        Some(peer) if Netdev::gro(&peer).unwrap_or(false) => Ok(()),
        Some(peer) => Err(format!(
            "{}'s peer {peer} has GRO off, so it would drop XDP frames: `ethtool -K {peer} gro on`, \
             or set [workers] fast_path = \"on\" if an XDP program runs on it",
            target.name
        )),
        None => Err(format!(
            "{}'s peer is in another network namespace: its GRO cannot be checked; \
             turn GRO on there and set [workers] fast_path = \"on\"",
            target.name
        )),
    }
}

impl FastPathCtl {
    /// Decides both directions for `mode`; `netdevs` are (outer, inner).
    pub fn new(mode: Mode, netdevs: &[Netdev; 2]) -> Self {
        let dir = |s: usize| {
            let target = &netdevs[1 - s];
            let (on, reason) = match mode {
                Mode::Off => (false, "[workers] fast_path = \"off\"".to_string()),
                Mode::On => (true, String::new()),
                Mode::Auto => match takes_xdp_frames(target) {
                    Ok(()) => (true, String::new()),
                    Err(r) => (false, r),
                },
            };
            if !on && mode != Mode::Off {
                tracing::info!(from = %netdevs[s].name, to = %target.name, %reason, "fast path off in this direction");
            }
            Direction {
                on,
                reason,
                errors_seen: redirect_errors(&netdevs[s].name, &target.name),
                ..Direction::default()
            }
        };
        Self {
            dirs: RefCell::new([dir(0), dir(1)]),
            rules: Cell::new(0),
            tables: Cell::new(0),
            devs: [
                (netdevs[0].name.clone(), netdevs[1].name.clone()),
                (netdevs[1].name.clone(), netdevs[0].name.clone()),
            ],
            xsk_seen: Cell::new([0; 2]),
            next_sweep: Cell::new(None),
        }
    }

    /// Whether the tables are due for a sweep at `now` for flows idle
    /// `idle` (a quarter of it, between 1 s and 10 s: a walk costs two
    /// system calls per entry, and an idle entry only takes a table slot
    /// the LRU would reclaim anyway).
    pub fn sweep_due(&self, now: Timestamp, idle: Duration) -> bool {
        if self.next_sweep.get().is_some_and(|t| now < t) {
            return false;
        }
        let every = (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(10));
        self.next_sweep.set(Some(now + every));
        true
    }

    /// Records a sweep of the table of frames received on side `s`.
    pub fn swept(&self, s: usize, sweep: fastpath::Sweep) {
        let mut dirs = self.dirs.borrow_mut();
        dirs[s].entries = sweep.entries;
        dirs[s].expired += sweep.expired;
    }

    /// The state of the direction receiving on side `s` (0 outer, 1 inner).
    pub fn direction(&self, s: usize) -> Direction {
        self.dirs.borrow()[s].clone()
    }

    /// Whether any direction is on (the workers then offer flows).
    pub fn any_on(&self) -> bool {
        (0..2).any(|s| self.direction(s).on)
    }

    /// The decision generation entries must carry (the workers compute the
    /// same from their rules and tables).
    pub fn generation(&self) -> u32 {
        fastpath::generation(self.rules.get(), self.tables.get())
    }

    /// New rules: every entry made under the old ones is stale.
    pub fn new_rules(&self) {
        self.rules.set(self.rules.get() + 1);
    }

    /// New director tables (generation `g`): VIP decisions may differ.
    /// Returns whether it changed.
    pub fn set_tables(&self, g: u64) -> bool {
        self.tables.replace(g) != g
    }

    /// Checks the redirect errors of each direction; turns a direction off
    /// when they grew by more than the AF_XDP drops (`xsk_drops`: the
    /// workers' sockets' `rx_dropped + rx_ring_full` per receiving side)
    /// explain. Returns whether anything changed (the XDP config must be
    /// rewritten).
    pub fn watch(&self, xsk_drops: [u64; 2]) -> bool {
        let mut changed = false;
        let seen = self.xsk_seen.replace(xsk_drops);
        let mut dirs = self.dirs.borrow_mut();
        for (s, d) in dirs.iter_mut().enumerate() {
            let (source, target) = &self.devs[s];
            let now = redirect_errors(source, target);
            let xsk = xsk_drops[s].saturating_sub(seen[s]);
            if d.on && now.saturating_sub(d.errors_seen) > xsk {
                d.on = false;
                d.reason = format!(
                    "{} XDP redirect error(s) from {source} to {target}: {target}'s peer drops XDP \
                     frames; turn GRO on at the peer (`ethtool -K PEER gro on`) and restart headroomd",
                    now - d.errors_seen - xsk,
                );
                tracing::error!(from = %source, to = %target, reason = %d.reason, "fast path turned off");
                metrics::counter!("headroom_fast_path_disabled_total", "interface" => target.clone())
                    .increment(1);
                changed = true;
            }
            d.errors_seen = now;
        }
        changed
    }
}
