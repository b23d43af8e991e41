//! Embedded XDP objects (`bpf/pktgen*.bpf.c`, `bpf/redirect.bpf.c`) and
//! their loaders.

use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{Link, MapCore, MapFlags, Object, ObjectBuilder};

use crate::packet::Template;

const PKTGEN_OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pktgen.bpf.o"));
const SINK_OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pktgen_sink.bpf.o"));
const REDIRECT_OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/redirect.bpf.o"));

/// Length of the template prefix the XDP generator rewrites.
pub const PG_TMPL_LEN: usize = 128;
/// Sink: redirect to AF_XDP sockets.
pub const SINK_XSK: u32 = 0;
/// Sink: count in the kernel and drop.
pub const SINK_COUNT: u32 = 1;

/// Errors loading or running XDP programs.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// libbpf failed to open, load or attach an object.
    #[error("{what}: {source}")]
    Libbpf {
        /// What was being done.
        what: &'static str,
        /// libbpf's error.
        source: libbpf_rs::Error,
    },
    /// An expected map or program is missing from an embedded object.
    #[error("embedded BPF object lacks {0}")]
    Missing(&'static str),
    /// BPF_PROG_RUN failed.
    #[error("BPF_PROG_RUN (live frames) failed: {0}")]
    TestRun(std::io::Error),
}

fn lb(what: &'static str) -> impl FnOnce(libbpf_rs::Error) -> BpfError {
    move |source| BpfError::Libbpf { what, source }
}

fn load(obj: &[u8], what: &'static str) -> Result<Object, BpfError> {
    ObjectBuilder::default()
        .open_memory(obj)
        .map_err(lb(what))?
        .load()
        .map_err(lb(what))
}

fn update(obj: &Object, map: &'static str, key: &[u8], value: &[u8]) -> Result<(), BpfError> {
    let m = obj
        .maps()
        .find(|m| m.name() == map)
        .ok_or(BpfError::Missing(map))?;
    m.update(key, value, MapFlags::ANY)
        .map_err(lb("updating a BPF map"))
}

fn attach(obj: &Object, ifindex: u32) -> Result<Link, BpfError> {
    let p = obj
        .progs_mut()
        .next()
        .ok_or(BpfError::Missing("an XDP program"))?;
    p.attach_xdp(ifindex as i32)
        .map_err(lb("attaching XDP program"))
}

/// Per-instance generator configuration (mirror of `struct pg_config`).
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// Flows this instance owns start here.
    pub flow_base: u32,
    /// Number of flows this instance owns.
    pub flow_count: u32,
    /// 5-tuple space.
    pub total_flows: u32,
    /// Source address range start (host order).
    pub ip_min: u32,
    /// Source address count.
    pub ip_cnt: u32,
    /// Source port range start.
    pub port_min: u32,
    /// Source port count.
    pub port_cnt: u32,
    /// Redirect target, 0 for XDP_TX.
    pub redirect_ifindex: u32,
    /// Rate of this instance in frames per second (0: unpaced).
    pub rate: u64,
    /// Frames by which a paced generator may catch up after falling behind.
    pub max_lag: u64,
    /// Stop building frames after this many (0: no limit).
    pub max_frames: u64,
}

/// XDP live-frames generator: one loaded program instance per thread.
pub struct PktgenProg {
    obj: Object,
    frame: Vec<u8>,
}

impl std::fmt::Debug for PktgenProg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PktgenProg")
            .field("frame_len", &self.frame.len())
            .finish()
    }
}

impl PktgenProg {
    /// Loads the generator and writes its configuration.
    pub fn new(t: &Template, c: &PgConfig) -> Result<PktgenProg, BpfError> {
        let obj = load(PKTGEN_OBJ, "loading the XDP generator")?;
        let mut v = vec![0u8; PG_TMPL_LEN];
        let n = t.frame.len().min(PG_TMPL_LEN);
        v[..n].copy_from_slice(&t.frame[..n]);
        for x in [
            u32::from(t.l4.proto()),
            c.ip_min,
            c.ip_cnt,
            c.port_min,
            c.port_cnt,
            c.flow_base,
            c.flow_count,
            c.total_flows,
            t.ip_sum,
            t.l4_sum,
            t.tcp_seq_base,
            t.tcp_seq_step,
            c.redirect_ifindex,
            0,
        ] {
            v.extend_from_slice(&x.to_ne_bytes());
        }
        let interval_fp = if c.rate == 0 {
            0
        } else {
            ((1u128 << 10) * 1_000_000_000 / u128::from(c.rate)).max(1) as u64
        };
        for x in [
            interval_fp,
            interval_fp.saturating_mul(c.max_lag.max(1)),
            c.max_frames,
        ] {
            v.extend_from_slice(&x.to_ne_bytes());
        }
        update(&obj, "pg_cfg", &0u32.to_ne_bytes(), &v)?;
        Ok(PktgenProg {
            obj,
            frame: t.frame.clone(),
        })
    }

    /// Frames built (sent with XDP_TX / redirect) so far, and the send
    /// times (CLOCK_MONOTONIC ns) of the first and the latest of them.
    pub fn progress(&self) -> Result<(u64, u64, u64), BpfError> {
        let m = self
            .obj
            .maps()
            .find(|m| m.name() == "pg_state")
            .ok_or(BpfError::Missing("pg_state"))?;
        let v = m
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(lb("reading generator state"))?
            .unwrap_or_default();
        let rd = |i: usize| {
            v.get(i * 8..i * 8 + 8)
                .and_then(|x| x.try_into().ok())
                .map(u64::from_ne_bytes)
                .unwrap_or(0)
        };
        Ok((rd(0), rd(3), rd(4)))
    }

    /// Runs the program `repeat` times in live-frames mode on `ifindex`.
    pub fn run(&self, ifindex: u32, repeat: u32, batch: u32) -> Result<(), BpfError> {
        let prog = self
            .obj
            .progs()
            .next()
            .ok_or(BpfError::Missing("pktgen_xdp"))?;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
        let ctx: [u32; 6] = [0, self.frame.len() as u32, 0, ifindex, 0, 0];
        let mut opts = libbpf_sys::bpf_test_run_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
            data_in: self.frame.as_ptr().cast(),
            data_size_in: self.frame.len() as u32,
            ctx_in: ctx.as_ptr().cast(),
            ctx_size_in: std::mem::size_of_val(&ctx) as u32,
            repeat: repeat.min(i32::MAX as u32) as i32,
            flags: libbpf_sys::BPF_F_TEST_XDP_LIVE_FRAMES,
            batch_size: batch,
            ..Default::default()
        };
        // SAFETY: the program fd is valid while `self.obj` lives; `opts`
        // points at `self.frame` and `ctx`, both alive for the call, with
        // their exact sizes; no output buffers are passed.
        let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_fd().as_raw_fd(), &mut opts) };
        if rc != 0 {
            return Err(BpfError::TestRun(std::io::Error::from_raw_os_error(-rc)));
        }
        Ok(())
    }
}

/// Sink / forwarder XDP program attached to one interface.
pub struct SinkProg {
    obj: Object,
    _link: Link,
}

impl std::fmt::Debug for SinkProg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkProg").finish()
    }
}

/// Counters read from the in-kernel sink.
#[derive(Debug, Clone, Default)]
pub struct KernelSinkStats {
    /// Frames seen.
    pub rx: u64,
    /// Frames with the magic.
    pub valid: u64,
    /// Bytes of valid frames.
    pub bytes: u64,
    /// Valid frames not above their flow's highest sequence.
    pub late: u64,
    /// First valid frame time.
    pub first_ns: u64,
    /// Last valid frame time.
    pub last_ns: u64,
    /// Sum over flows of (highest sequence + 1).
    pub expected: u64,
    /// Flows with at least one frame.
    pub flows_seen: u64,
    /// Latency histogram bucket counts.
    pub hist: Vec<u64>,
}

impl SinkProg {
    /// Loads the program, configures `mode`/`fallback` and attaches it.
    pub fn attach(ifindex: u32, mode: u32, fallback: u32) -> Result<SinkProg, BpfError> {
        let obj = load(SINK_OBJ, "loading the sink XDP program")?;
        let mut cfg = mode.to_ne_bytes().to_vec();
        cfg.extend_from_slice(&fallback.to_ne_bytes());
        update(&obj, "sink_cfg", &0u32.to_ne_bytes(), &cfg)?;
        let link = attach(&obj, ifindex)?;
        Ok(SinkProg { obj, _link: link })
    }

    /// Binds an AF_XDP socket to queue `queue`.
    pub fn insert_xsk(&self, queue: u32, fd: i32) -> Result<(), BpfError> {
        update(&self.obj, "xsks", &queue.to_ne_bytes(), &fd.to_ne_bytes())
    }

    /// Reads the in-kernel counters (count mode).
    pub fn stats(&self, flows: u32) -> Result<KernelSinkStats, BpfError> {
        let find = |n: &'static str| {
            self.obj
                .maps()
                .find(|m| m.name() == n)
                .ok_or(BpfError::Missing(n))
        };
        let mut s = KernelSinkStats::default();
        let st = find("sink_stats")?;
        let rd = |b: &[u8], i: usize| {
            u64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]))
        };
        if let Some(per_cpu) = st
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(lb("reading sink stats"))?
        {
            for b in per_cpu {
                s.rx += rd(&b, 0);
                s.valid += rd(&b, 1);
                s.bytes += rd(&b, 2);
                s.late += rd(&b, 3);
                let (f, l) = (rd(&b, 4), rd(&b, 5));
                if f != 0 && (s.first_ns == 0 || f < s.first_ns) {
                    s.first_ns = f;
                }
                s.last_ns = s.last_ns.max(l);
            }
        }
        let h = find("sink_hist")?;
        s.hist = vec![0; crate::hist::BUCKETS];
        for (i, slot) in s.hist.iter_mut().enumerate() {
            if let Some(per_cpu) = h
                .lookup_percpu(&(i as u32).to_ne_bytes(), MapFlags::ANY)
                .map_err(lb("reading sink histogram"))?
            {
                *slot = per_cpu.iter().map(|b| rd(b, 0)).sum();
            }
        }
        let fl = find("sink_flows")?;
        for f in 0..flows.min(65536) {
            if let Some(b) = fl
                .lookup(&f.to_ne_bytes(), MapFlags::ANY)
                .map_err(lb("reading sink flows"))?
            {
                s.expected += rd(&b, 0);
                s.flows_seen += u64::from(rd(&b, 1) > 0);
            }
        }
        Ok(s)
    }
}

/// XDP_REDIRECT baseline: one program instance per direction.
pub struct RedirectPair {
    _objs: Vec<(Object, Link)>,
}

impl std::fmt::Debug for RedirectPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedirectPair").finish()
    }
}

impl RedirectPair {
    /// Attaches `redirect.bpf.c` to `a` (to `b`) and to `b` (to `a`).
    pub fn attach(a: u32, b: u32) -> Result<RedirectPair, BpfError> {
        let mut objs = Vec::new();
        for (from, to) in [(a, b), (b, a)] {
            let obj = load(REDIRECT_OBJ, "loading the redirect XDP program")?;
            update(&obj, "tx_port", &0u32.to_ne_bytes(), &to.to_ne_bytes())?;
            let link = attach(&obj, from)?;
            objs.push((obj, link));
        }
        Ok(RedirectPair { _objs: objs })
    }
}
