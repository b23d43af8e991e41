//! The per-frame pipeline each worker runs: parse, classify into a flow and
//! a job (counting bytes both ways), then forward. Later stages (the flow
//! director, the ARP interceptor, the pacer) plug in here.

use std::sync::Arc;

use headroom_config::net::{Direction, IpPrefix};

use crate::{
    classifier::{Classifier, ClassifierSnapshot, RuleSet},
    packet::{parse_frame, ParseStats},
    worker::{Action, DataMut, Pipeline, Side},
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
}

/// Maps outbound frames to pipes: the first pipe whose remote prefix holds
/// the destination carries the frame (no prefix = everything).
#[derive(Debug, Clone, Default)]
pub struct PacingRules {
    /// Per pipe (index = pipe id): the remote prefix it carries.
    pub pipes: Vec<Option<IpPrefix>>,
    /// Job slots the pacer has; jobs beyond are paced as the default job.
    pub job_slots: u16,
}

impl PacingRules {
    #[inline]
    fn pipe_for(&self, dst: std::net::IpAddr) -> Option<u16> {
        self.pipes
            .iter()
            .position(|p| p.as_ref().is_none_or(|p| p.contains(&dst)))
            .map(|i| i as u16)
    }
}

/// The Headroom pipeline (one per worker).
pub struct HeadroomPipeline {
    classifier: Classifier,
    parse: ParseStats,
    pacing: PacingRules,
}

impl HeadroomPipeline {
    /// A pipeline with `rules`.
    pub fn new(cfg: &PipelineConfig, rules: Arc<RuleSet>) -> Self {
        Self {
            classifier: Classifier::new(cfg.flow_capacity, cfg.idle_timeout_ns, rules),
            parse: ParseStats::default(),
            pacing: cfg.pacing.clone(),
        }
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
    fn on_frame(&mut self, now_ns: u64, side: Side, data: &mut DataMut<'_>) -> Action {
        let frame = data.contents();
        let len = frame.len() as u32;
        let dir = direction(side);
        match self.parse.record(parse_frame(frame)) {
            Ok(info) => match info.flow {
                Some(key) => {
                    let job = self.classifier.classify(now_ns, &key, dir, len);
                    if side == Side::Inner && !self.pacing.pipes.is_empty() {
                        if let Some(pipe) = self.pacing.pipe_for(key.dst_ip()) {
                            let job = if job.0 < self.pacing.job_slots {
                                job.0
                            } else {
                                0
                            };
                            return Action::Pace { pipe, job };
                        }
                    }
                }
                None => {
                    self.classifier.classify_unkeyed(dir, len);
                }
            },
            Err(_) => {
                self.classifier.classify_unkeyed(dir, len);
            }
        }
        Action::Forward
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::SetRules(r) => self.classifier.set_rules(r),
        }
    }

    fn tick(&mut self, now_ns: u64) -> Report {
        self.classifier.expire(now_ns);
        Report {
            classifier: self.classifier.snapshot(),
            parse_errors: self.parse.errors(),
            parsed: self.parse.ok,
        }
    }
}
