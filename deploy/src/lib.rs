//! Deployment on a real server: puts the host stack behind headroomd and
//! back.
//!
//! ```text
//!   before:   wire ── eth0 (host addresses, routes, MAC M)
//!
//!   after:    wire ── eth0 ══ XDP ══ headroomd workers ══ XDP ══ inner ── hr-host (host addresses,
//!                       ╲                                      ╱              routes, MAC M)
//!                        ╲──────── hr-bridge (fail-open) ─────╱
//! ```
//!
//! The physical NIC becomes headroomd's outer interface; the host's
//! addresses, neighbours and routes move to one end of a veth pair whose
//! other end (`inner`) is headroomd's inner interface; a kernel bridge joins
//! the NIC and `inner`, so when headroomd is not running (its XDP programs
//! are attached with bpf_links and detach when it dies) the bridge carries
//! the traffic. The host end takes the NIC's MAC, so the neighbours' ARP
//! caches stay valid; the NIC takes a stand-in.
//!
//! Layers, after the exchange's pattern: [`plan`] decides from an
//! [`Observed`] state what to change and what to refuse (pure, unit-tested),
//! [`io`] reads the state and carries the steps out. [`attach`] and
//! [`detach`] run observe -> plan -> apply -> observe -> check. Both are
//! idempotent: a second run finds nothing to do; an interrupted run resumes
//! from the record attach keeps in the bridge's alias.

pub mod ethtool;
pub mod io;
pub mod model;
mod netlink;
pub mod plan;
pub mod sysctl;

pub use model::Observed;
pub use plan::{Check, Plan, Record, Refusal, Spec, Step};

/// Errors of a deployment.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The namespace is in a state the deployment does not take on.
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    /// Reading the state failed.
    #[error("reading the network configuration: {0}")]
    Observe(std::io::Error),
    /// A step failed; the steps before it were carried out.
    #[error("step {n} ({step}) failed: {source}; {done} step(s) before it were applied; run the same command again to resume, or the opposite one to go back")]
    Step {
        /// 1-based number of the failed step.
        n: usize,
        /// The step.
        step: String,
        /// Steps applied before it.
        done: usize,
        /// Why.
        source: std::io::Error,
    },
    /// The result does not verify.
    #[error("applied, but the result does not verify:\n{0}")]
    Check(String),
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The steps carried out (empty when there was nothing to do).
    pub plan: Plan,
    /// The checks of the result.
    pub checks: Vec<Check>,
    /// Time from the first to the last step.
    pub elapsed: std::time::Duration,
}

impl Spec {
    /// The deployment a headroomd configuration describes: the NIC is its
    /// outer interface, `inner` its inner one.
    pub fn from_config(cfg: &headroom_config::Config) -> Spec {
        let d = &cfg.deploy;
        Spec {
            nic: cfg.interfaces.outer.clone(),
            inner: cfg.interfaces.inner.clone(),
            host: d.host.clone(),
            bridge: d.bridge.clone(),
            mtu: d.mtu,
            inner_queues: d.inner_queues,
        }
    }
}

/// Reads the state of the current network namespace.
pub fn observe(spec: &Spec) -> Result<Observed, DeployError> {
    io::Kernel::open()
        .and_then(|mut k| k.observe(spec))
        .map_err(DeployError::Observe)
}

fn run(
    spec: &Spec,
    plan: impl Fn(&Observed, &Spec) -> Result<Plan, Refusal>,
    check: impl Fn(&Observed, &Spec) -> Vec<Check>,
    dry_run: bool,
) -> Result<Report, DeployError> {
    let mut k = io::Kernel::open().map_err(DeployError::Observe)?;
    let obs = k.observe(spec).map_err(DeployError::Observe)?;
    let plan = plan(&obs, spec)?;
    if dry_run {
        return Ok(Report {
            checks: if plan.is_empty() {
                check(&obs, spec)
            } else {
                Vec::new()
            },
            plan,
            ..Default::default()
        });
    }
    let start = std::time::Instant::now();
    for (i, step) in plan.steps.iter().enumerate() {
        tracing::debug!(step = %step, "deploy");
        k.apply(step).map_err(|source| DeployError::Step {
            n: i + 1,
            step: step.to_string(),
            done: i,
            source,
        })?;
    }
    let elapsed = start.elapsed();
    let checks = settle(&mut k, spec, &check)?;
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.to_string())
        .collect();
    if !failed.is_empty() {
        return Err(DeployError::Check(failed.join("\n")));
    }
    Ok(Report {
        plan,
        checks,
        elapsed,
    })
}

/// Re-reads the state until the checks hold or a second passes (a bridge
/// port reaches forwarding, a carrier comes up, asynchronously).
fn settle(
    k: &mut io::Kernel,
    spec: &Spec,
    check: &impl Fn(&Observed, &Spec) -> Vec<Check>,
) -> Result<Vec<Check>, DeployError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let obs = k.observe(spec).map_err(DeployError::Observe)?;
        let checks = check(&obs, spec);
        if checks.iter().all(|c| c.ok) || std::time::Instant::now() >= deadline {
            return Ok(checks);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Puts the host stack of the current network namespace behind headroomd
/// (see the crate docs); with `dry_run` only plans.
pub fn attach(spec: &Spec, dry_run: bool) -> Result<Report, DeployError> {
    run(spec, plan::plan_attach, plan::check_attached, dry_run)
}

/// Puts the host stack back onto the NIC and removes what attach made;
/// with `dry_run` only plans.
pub fn detach(spec: &Spec, dry_run: bool) -> Result<Report, DeployError> {
    run(spec, plan::plan_detach, check_detached, dry_run)
}

/// After detach: nothing of the deployment is left and the NIC carries the
/// host again.
pub fn check_detached(obs: &Observed, spec: &Spec) -> Vec<Check> {
    let mut out = Vec::new();
    for dev in [&spec.bridge, &spec.inner, &spec.host] {
        out.push(Check {
            what: format!("{dev} is gone"),
            ok: obs.link(dev).is_none(),
        });
    }
    if let Some(nic) = obs.link(&spec.nic) {
        out.push(Check {
            what: format!("{} is a port of nothing", nic.name),
            ok: nic.master.is_none(),
        });
    }
    out
}
