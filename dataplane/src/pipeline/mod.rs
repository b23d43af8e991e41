//! The per-frame pipeline each worker runs, over one [`Frame`]:
//!
//! 1. parse it once ([`parse_packet`]: every header lies in the first
//!    buffer, lengths count all buffers);
//! 2. a packet longer than the interface it leaves by is handed back to be
//!    segmented (TCP aggregates) or dropped and counted (anything else);
//! 3. complete a partial TCP/UDP checksum (see [`partial_checksum`]) on the
//!    sides that can carry them;
//! 4. the flow director and ARP interceptor (may answer, bounce, drop or
//!    decapsulate; a decapsulated frame is a new packet and is parsed again);
//! 5. classify into a flow and a job, counting packets and bytes both ways;
//! 6. pace traffic on the pipe that carries its direction and remote end, or forward;
//! 7. time the requests and replies of jobs with a response-time goal
//!    ([`crate::response`]; their flows stay off the fast path, which
//!    cannot time them).

pub mod director_stage;

use std::sync::Arc;

use headroom_config::net::{Direction, IpPrefix, PipeDirection};

use crate::{
    classifier::{Classifier, ClassifierSnapshot, JobId, RuleSet},
    frame::Frame,
    packet::{
        ipv4::protocol,
        parse_packet,
        partial_checksum::{self, Completion},
        FrameInfo, ParseStats,
    },
    response::{ResponseConfig, ResponseReport, ResponseTracker, TcpMeta},
    worker::{Action, DropReason, FastPathRequest, Pipeline, Side},
    xdp::abi::{HrFlowKey, HR_MAX_JOBS},
    xdp::{
        abi::{HrEncap, HR_FP_DECAP, HR_FP_ENCAP, HR_FP_FORWARD},
        fastpath,
    },
};

/// Commands from the control thread, applied between batches.
#[derive(Debug)]
pub enum Command {
    /// Swap in a new rule set (SIGHUP). Existing flows are re-mapped on
    /// their next packet, so traffic moves to the new job without loss.
    SetRules(Arc<RuleSet>),
}

/// What a worker's pipeline publishes (cumulative counters).
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Flow and job accounting.
    pub classifier: ClassifierSnapshot,
    /// Frames the parser rejected, by kind (forwarded anyway, counted as
    /// default-job traffic: the XDP program already vetted the headers it
    /// needs, and a transparent bump must not eat what it cannot parse).
    pub parse_errors: u64,
    /// Frames parsed.
    pub parsed: u64,
    /// Flow director counters (None when no VIP service is configured).
    pub director: Option<director_stage::DirectorReport>,
    /// Partial TCP/UDP checksums completed, per receiving side.
    pub checksums_completed: [u64; 2],
    /// Packets longer than the egress handed back to be segmented, per
    /// receiving side.
    pub segmented: [u64; 2],
    /// Packets longer than the egress that cannot be segmented (not TCP),
    /// dropped, per receiving side.
    pub too_big: [u64; 2],
    /// Response times of the measured jobs (None: no job measured yet).
    pub response: Option<ResponseReport>,
}

/// Settings of a pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Flow-table capacity.
    pub flow_capacity: usize,
    /// Idle timeout of a flow, ns.
    pub idle_timeout_ns: u64,
    /// Which outbound traffic each pipe carries.
    pub pacing: PacingRules,
    /// Per receiving side: the MTU of the interface its frames leave by
    /// (the other one), i.e. the largest IP packet forwarded unchanged.
    pub egress_mtu: [u16; 2],
    /// Per receiving side: whether partial checksums are completed (the host
    /// side, and a network side on a virtual device; see
    /// [`partial_checksum`]).
    pub complete_checksums: [bool; 2],
    /// Offer decided flows to the XDP fast path.
    pub fast_path: bool,
    /// Connections the response-time tracker holds at most (allocated when
    /// a job is first measured).
    pub response_capacity: usize,
}

impl PipelineConfig {
    /// Settings for tests and benches: 1500-byte MTUs, checksums completed on
    /// both sides.
    pub fn new(flow_capacity: usize, idle_timeout_ns: u64, pacing: PacingRules) -> Self {
        Self {
            flow_capacity,
            idle_timeout_ns,
            pacing,
            egress_mtu: [1500; 2],
            complete_checksums: [true; 2],
            fast_path: false,
            response_capacity: flow_capacity.min(RESPONSE_CAPACITY),
        }
    }
}

/// Most connections a worker's response-time tracker holds by default
/// (about 150 bytes each).
pub const RESPONSE_CAPACITY: usize = 65_536;

/// Maps frames to pipes: the first pipe that carries the frame's direction
/// and whose remote prefix holds the frame's remote address (destination of
/// outbound frames, source of inbound ones; no prefix = everything) paces it.
#[derive(Debug, Clone, Default)]
pub struct PacingRules {
    /// Per pipe (index = pipe id): what it carries.
    pub pipes: Vec<PipeMatch>,
    /// Job slots the pacer has; jobs beyond are paced as the default job.
    pub job_slots: u16,
}

/// The traffic one pipe carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipeMatch {
    /// Remote prefix (none: every remote address).
    pub remote: Option<IpPrefix>,
    /// Directions paced.
    pub direction: PipeDirection,
}

impl PipeMatch {
    /// Outbound traffic to `remote`, as pipes carried before they had a direction.
    pub fn outbound(remote: Option<IpPrefix>) -> Self {
        PipeMatch {
            remote,
            direction: PipeDirection::Outbound,
        }
    }
}

impl PacingRules {
    /// The pipe for a frame travelling in `dir` whose remote end is `remote`.
    #[inline]
    fn pipe_for(&self, dir: Direction, remote: std::net::IpAddr) -> Option<u16> {
        self.pipes
            .iter()
            .position(|p| {
                p.direction.carries(dir) && p.remote.as_ref().is_none_or(|r| r.contains(&remote))
            })
            .map(|i| i as u16)
    }
}

/// The Headroom pipeline (one per worker).
pub struct HeadroomPipeline {
    classifier: Classifier,
    parse: ParseStats,
    director: Option<director_stage::DirectorStage>,
    pacing: PacingRules,
    egress_mtu: [u16; 2],
    complete_checksums: [bool; 2],
    checksums_completed: [u64; 2],
    segmented: [u64; 2],
    too_big: [u64; 2],
    fast_path: bool,
    fast: Option<FastPathRequest>,
    response: Option<ResponseTracker>,
    response_cfg: ResponseConfig,
}

impl HeadroomPipeline {
    /// A pipeline with `rules`.
    pub fn new(cfg: &PipelineConfig, rules: Arc<RuleSet>) -> Self {
        let mut p = Self {
            classifier: Classifier::new(cfg.flow_capacity, cfg.idle_timeout_ns, rules.clone()),
            parse: ParseStats::default(),
            director: None,
            pacing: cfg.pacing.clone(),
            egress_mtu: cfg.egress_mtu,
            complete_checksums: cfg.complete_checksums,
            checksums_completed: [0; 2],
            segmented: [0; 2],
            too_big: [0; 2],
            fast_path: cfg.fast_path,
            fast: None,
            response: None,
            response_cfg: ResponseConfig {
                capacity: cfg.response_capacity.max(1),
                idle_timeout_ns: cfg.idle_timeout_ns,
            },
        };
        p.set_measured(&rules);
        p
    }

    /// Measures the jobs `rules` names (the tracker is allocated the first
    /// time one is; it keeps its counts across rule changes).
    fn set_measured(&mut self, rules: &RuleSet) {
        if rules.measured().is_empty() && self.response.is_none() {
            return;
        }
        let cfg = self.response_cfg;
        self.response
            .get_or_insert_with(|| ResponseTracker::new(cfg))
            .set_measured(rules.measured());
    }

    /// Whether `job`'s response times are measured.
    #[inline]
    fn measured(&self, job: u16) -> bool {
        self.response
            .as_ref()
            .is_some_and(|r| r.measures(JobId(job)))
    }

    /// Step 7: one frame of a measured job's TCP flow.
    #[inline]
    fn time(
        &mut self,
        now_ns: u64,
        side: Side,
        frame: &Frame<'_>,
        info: Option<&FrameInfo>,
        job: u16,
    ) {
        let (Some(r), Some(info)) = (self.response.as_mut(), info) else {
            return;
        };
        if !r.measures(JobId(job)) {
            return;
        }
        let (Some(flow), Some(seg)) = (info.flow, TcpMeta::from_frame(frame.data(), info)) else {
            return;
        };
        r.on_segment(now_ns, direction(side), &flow, JobId(job), &seg);
    }

    /// Whether a forwarded frame's flow can take the fast path, and its key:
    /// single-buffer TCP/UDP over IPv4 (not a fragment) or IPv6 without
    /// extension headers, not VIP traffic, a job the fast path accounts.
    /// Mirrors the XDP program's own checks (which also completes partial
    /// checksums, as step 3 does here).
    fn fast_path_key(frame: &Frame<'_>, info: &FrameInfo) -> Option<HrFlowKey> {
        if frame.is_multi_buffer() || info.is_fragment {
            return None;
        }
        let flow = info.flow?;
        let proto = flow.protocol();
        if proto != protocol::TCP && proto != protocol::UDP {
            return None;
        }
        let l4 = info.l4_offset?;
        let family = match info.kind {
            crate::packet::L3Kind::Ipv4 => 4,
            crate::packet::L3Kind::Ipv6 if l4 == info.l3_offset + 40 => 6,
            _ => return None,
        };
        let mut key = HrFlowKey {
            sport: flow.src_port().to_be(),
            dport: flow.dst_port().to_be(),
            proto,
            family,
            vlan: info.vlan.unwrap_or(0),
            ..HrFlowKey::default()
        };
        match (flow.src_ip(), flow.dst_ip()) {
            (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
                key.src[..4].copy_from_slice(&s.octets());
                key.dst[..4].copy_from_slice(&d.octets());
            }
            (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
                key.src = s.octets();
                key.dst = d.octets();
            }
            _ => return None,
        }
        Some(key)
    }

    /// Step 2: whether the packet fits the interface it leaves by; if not,
    /// what becomes of it.
    #[inline]
    fn oversize(&mut self, side: Side, frame: &Frame<'_>, info: &FrameInfo) -> Option<Action> {
        let mtu = self.egress_mtu[side as usize];
        let l3_len = frame.len().saturating_sub(usize::from(info.l3_offset));
        if l3_len <= usize::from(mtu) {
            return None;
        }
        let tcp = info.flow.is_some_and(|f| f.protocol() == protocol::TCP) && !info.is_fragment;
        if tcp {
            self.segmented[side as usize] += 1;
            Some(Action::Segment { max_l3: mtu })
        } else {
            self.too_big[side as usize] += 1;
            Some(Action::Drop(DropReason::TooBig))
        }
    }

    /// Offers the frame's flow to the fast path (see
    /// [`Pipeline::take_fast_path`]).
    #[inline]
    fn offer(
        &mut self,
        frame: &Frame<'_>,
        info: Option<&FrameInfo>,
        action: Action,
        job: u16,
        fp_action: u8,
        encap: HrEncap,
    ) {
        if !self.fast_path
            || !matches!(action, Action::Forward | Action::Bounce)
            || usize::from(job) >= HR_MAX_JOBS
            || self.measured(job)
        {
            return;
        }
        let Some(key) = info.and_then(|i| Self::fast_path_key(frame, i)) else {
            return;
        };
        let tables = self.director.as_ref().map_or(0, |d| d.tables_generation());
        self.fast = Some(FastPathRequest {
            key,
            job,
            gen: fastpath::generation(self.classifier.rules_generation(), tables),
            action: fp_action,
            encap,
        });
    }

    /// Steps 5 and 6, and the job the frame was counted in.
    #[inline]
    fn classify_job(
        &mut self,
        now_ns: u64,
        side: Side,
        len: u32,
        info: Option<&FrameInfo>,
    ) -> (Action, u16) {
        let dir = direction(side);
        match info.and_then(|i| i.flow) {
            Some(key) => {
                let job = self.classifier.classify(now_ns, &key, dir, len);
                if !self.pacing.pipes.is_empty() {
                    let remote = match dir {
                        Direction::Outbound => key.dst_ip(),
                        Direction::Inbound => key.src_ip(),
                    };
                    if let Some(pipe) = self.pacing.pipe_for(dir, remote) {
                        let slot = if job.0 < self.pacing.job_slots {
                            job.0
                        } else {
                            0
                        };
                        return (Action::Pace { pipe, job: slot }, job.0);
                    }
                }
                (Action::Forward, job.0)
            }
            None => {
                let job = self.classifier.classify_unkeyed(dir, len);
                (Action::Forward, job.0)
            }
        }
    }

    /// Adds the flow director stage (VIP services configured).
    pub fn with_director(mut self, stage: director_stage::DirectorStage) -> Self {
        self.director = Some(stage);
        self
    }
}

#[inline]
fn direction(side: Side) -> Direction {
    match side {
        Side::Outer => Direction::Inbound,
        Side::Inner => Direction::Outbound,
    }
}

impl Pipeline for HeadroomPipeline {
    type Command = Command;
    type Report = Report;

    #[inline]
    fn on_frame(&mut self, now_ns: u64, side: Side, frame: &mut Frame<'_>) -> Action {
        self.fast = None;
        let parsed = self.parse.record(parse_packet(frame.data(), frame.len()));
        let mut info = parsed.as_ref().ok().copied();
        if let Some(i) = &info {
            if let Some(a) = self.oversize(side, frame, i) {
                return a;
            }
            if self.complete_checksums[side as usize] {
                let (head, tail) = frame.parts_mut();
                if partial_checksum::complete(head, tail, i) == Completion::Completed {
                    self.checksums_completed[side as usize] += 1;
                }
            }
        }
        if let Some(d) = &mut self.director {
            match d.on_frame(now_ns, side, frame, parsed.as_ref()) {
                director_stage::StageVerdict::Continue => {}
                director_stage::StageVerdict::Rewritten => {
                    // Decapsulated: the packet behind the outer headers is
                    // what the host sees and what is accounted.
                    info = self
                        .parse
                        .record(parse_packet(frame.data(), frame.len()))
                        .ok();
                    let (action, job) =
                        self.classify_job(now_ns, side, frame.len() as u32, info.as_ref());
                    self.time(now_ns, side, frame, info.as_ref(), job);
                    self.offer(
                        frame,
                        info.as_ref(),
                        action,
                        job,
                        HR_FP_DECAP,
                        HrEncap::default(),
                    );
                    return action;
                }
                director_stage::StageVerdict::Done(Action::Bounce) => {
                    // Encapsulated towards a serving node: the fast path may
                    // do the same for the flow's next frames.
                    if let Some(e) = self.director.as_mut().and_then(|d| d.take_encap()) {
                        let pre = parsed.as_ref().ok().copied();
                        self.offer(frame, pre.as_ref(), Action::Bounce, 0, HR_FP_ENCAP, e);
                    }
                    return Action::Bounce;
                }
                director_stage::StageVerdict::Done(a) => return a,
            }
        }
        let (action, job) = self.classify_job(now_ns, side, frame.len() as u32, info.as_ref());
        self.time(now_ns, side, frame, info.as_ref(), job);
        let director_flow = match (&self.director, &info) {
            (Some(d), Some(i)) => d.involves(side, i),
            _ => false,
        };
        if !director_flow {
            self.offer(
                frame,
                info.as_ref(),
                action,
                job,
                HR_FP_FORWARD,
                HrEncap::default(),
            );
        }
        action
    }

    fn take_fast_path(&mut self) -> Option<FastPathRequest> {
        self.fast.take()
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::SetRules(r) => {
                self.set_measured(&r);
                self.classifier.set_rules(r)
            }
        }
    }

    fn tick(&mut self, now_ns: u64) -> Report {
        self.classifier.expire(now_ns);
        let director = self.director.as_mut().map(|d| {
            d.sweep(now_ns);
            d.report()
        });
        let response = self.response.as_mut().map(|r| {
            r.expire(now_ns);
            r.snapshot()
        });
        Report {
            response,
            classifier: self.classifier.snapshot(),
            parse_errors: self.parse.errors(),
            parsed: self.parse.ok,
            director,
            checksums_completed: self.checksums_completed,
            segmented: self.segmented,
            too_big: self.too_big,
        }
    }
}

#[cfg(test)]
mod tests;
