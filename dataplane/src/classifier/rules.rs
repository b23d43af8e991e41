//! Compiled flow rules: which job a flow belongs to.

use headroom_config::net::{Direction, FlowRule, IpPrefix, PortRange};

use super::{FlowKey, JobId};

/// One rule, flattened for matching.
#[derive(Clone, Debug)]
struct CompiledRule {
    job: JobId,
    protocol: Option<u8>,
    direction: Option<Direction>,
    /// True if either port range is constrained (then ICMP & co. never match).
    needs_ports: bool,
    local_port: PortRange,
    remote_port: PortRange,
    local: Option<IpPrefix>,
    remote: Option<IpPrefix>,
}

impl CompiledRule {
    #[inline]
    fn matches(&self, k: &FlowKey, origin: Direction) -> bool {
        if let Some(p) = self.protocol {
            if p != k.protocol() {
                return false;
            }
        }
        if let Some(d) = self.direction {
            if d != origin {
                return false;
            }
        }
        if self.needs_ports
            && !(k.has_ports()
                && self.local_port.contains(k.src_port())
                && self.remote_port.contains(k.dst_port()))
        {
            return false;
        }
        if let Some(p) = &self.local {
            if !p.contains_raw(k.is_ipv6(), k.src_raw()) {
                return false;
            }
        }
        if let Some(p) = &self.remote {
            if !p.contains_raw(k.is_ipv6(), k.dst_raw()) {
                return false;
            }
        }
        true
    }
}

/// An immutable, compiled set of job rules, shared (`Arc`) by every worker's
/// [`super::Classifier`] and replaced as a whole on reload.
///
/// **Precedence: the first matching rule wins, in configuration order**: jobs in the order
/// given to [`RuleSet::compile`] (the order of the config file), and within a job its
/// rules in order. A flow no rule matches belongs to the default job [`JobId::DEFAULT`]
/// (0). Rules may name job 0 explicitly. A job listed twice keeps both rule lists at their
/// positions.
///
/// Matching is a linear scan over flat rules without allocation; it runs once per new flow
/// (and once per flow after a reload), not per packet.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    rules: Box<[CompiledRule]>,
    jobs: Box<[JobId]>,
    max_job: u16,
    measured: Box<[JobId]>,
}

impl RuleSet {
    /// Compile the rules of each job, in precedence order.
    pub fn compile(jobs: &[(JobId, Vec<FlowRule>)]) -> RuleSet {
        let mut rules = Vec::new();
        let mut ids = vec![JobId::DEFAULT];
        for (job, list) in jobs {
            if !ids.contains(job) {
                ids.push(*job);
            }
            for r in list {
                rules.push(CompiledRule {
                    job: *job,
                    protocol: r.protocol.map(|p| p.number()),
                    direction: r.direction,
                    needs_ports: r.has_port_constraint(),
                    local_port: r.local_port.unwrap_or(PortRange::ANY),
                    remote_port: r.remote_port.unwrap_or(PortRange::ANY),
                    local: r.local,
                    remote: r.remote,
                });
            }
        }
        let max_job = ids.iter().map(|j| j.0).max().unwrap_or(0);
        RuleSet {
            rules: rules.into(),
            jobs: ids.into(),
            max_job,
            measured: Box::new([]),
        }
    }

    /// The same rules, with the response times of `jobs` measured (the
    /// jobs with a response-time goal; see [`crate::response`]).
    pub fn with_measured(mut self, jobs: &[JobId]) -> RuleSet {
        self.measured = jobs.into();
        self
    }

    /// The jobs whose response times the workers measure.
    pub fn measured(&self) -> &[JobId] {
        &self.measured
    }

    /// A rule set with no rules: everything goes to the default job.
    pub fn empty() -> RuleSet {
        RuleSet::compile(&[])
    }

    /// The job of a flow. `key` must be oriented local -> remote
    /// ([`FlowKey::local_remote`]); `origin` is the direction of the flow's first packet
    /// (which side opened it).
    #[inline]
    pub fn classify(&self, key: &FlowKey, origin: Direction) -> JobId {
        for r in self.rules.iter() {
            if r.matches(key, origin) {
                return r.job;
            }
        }
        JobId::DEFAULT
    }

    /// Every job id named in the configuration, in order, starting with the default job.
    pub fn jobs(&self) -> &[JobId] {
        &self.jobs
    }

    /// The largest job id (for sizing per-job arrays).
    pub fn max_job(&self) -> JobId {
        JobId(self.max_job)
    }

    /// Number of compiled rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True if there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}
