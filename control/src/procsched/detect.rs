//! Application detection: process rules -> job.
//!
//! Precedence:
//! 1. A process that matches a rule of some job belongs to the **first** job
//!    in configuration order with a matching rule (rules within a job are
//!    alternatives; fields within a rule must all match).
//! 2. Otherwise, if the nearest ancestor (following the parent chain) that
//!    belongs to a job belongs to a job with `include_children`, the process
//!    joins that job.
//! 3. Otherwise the process is unmanaged.
//!
//! Kernel threads are never matched. Assignments are sticky: a child that
//! joined through its parent stays in the job after the parent exits (it is
//! re-parented, typically to init). On reload every process is classified
//! again under the new rules; an orphan whose ancestry can no longer be
//! traced keeps its previous job if that job still exists and still
//! includes children.

use super::scan::ProcInfo;
use headroom_config::process::{split_env_rule, Glob, ProcessJob, ProcessRule};
use std::collections::HashMap;

/// A rule with its globs compiled.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    name: Option<Glob>,
    cmdline: Option<Glob>,
    uid: Option<u32>,
    gid: Option<u32>,
    session: Option<u32>,
    env: Vec<(String, Option<Glob>)>,
    parent: Option<Glob>,
}

impl CompiledRule {
    /// Compiles a validated rule; invalid globs are reported.
    pub fn new(rule: &ProcessRule) -> Result<Self, headroom_config::process::ProcessConfigError> {
        rule.validate()?;
        let g = |p: &Option<String>| p.as_deref().map(Glob::new).transpose();
        let mut env = Vec::new();
        for e in &rule.env {
            let (k, v) = split_env_rule(e);
            env.push((k.to_string(), v.map(Glob::new).transpose()?));
        }
        Ok(CompiledRule {
            name: g(&rule.name)?,
            cmdline: g(&rule.cmdline)?,
            uid: rule.uid,
            gid: rule.gid,
            session: rule.session,
            env,
            parent: g(&rule.parent)?,
        })
    }

    /// True when every present field matches. `parent_comm` is the parent's
    /// name, if the parent is known.
    pub fn matches(&self, p: &ProcInfo, parent_comm: Option<&str>) -> bool {
        if p.kernel_thread {
            return false;
        }
        self.name.as_ref().is_none_or(|g| g.matches(&p.comm))
            && self.cmdline.as_ref().is_none_or(|g| g.matches(&p.cmdline))
            && self.uid.is_none_or(|u| u == p.uid)
            && self.gid.is_none_or(|u| u == p.gid)
            && self.session.is_none_or(|s| s == p.sid)
            && self.env.iter().all(|(k, v)| match (p.env_var(k), v) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(val), Some(g)) => g.matches(val),
            })
            && self
                .parent
                .as_ref()
                .is_none_or(|g| parent_comm.is_some_and(|c| g.matches(c)))
    }
}

/// A job with compiled rules.
#[derive(Debug, Clone)]
pub struct CompiledJob {
    /// The job as configured.
    pub config: ProcessJob,
    /// Its rules.
    pub rules: Vec<CompiledRule>,
}

impl CompiledJob {
    /// Compiles a job.
    pub fn new(job: &ProcessJob) -> Result<Self, headroom_config::process::ProcessConfigError> {
        job.validate()?;
        Ok(CompiledJob {
            config: job.clone(),
            rules: job
                .rules
                .iter()
                .map(CompiledRule::new)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// How a process came to belong to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// It matched one of the job's rules.
    Rule,
    /// It descends from a process of the job (`include_children`).
    Parent,
}

/// A process's job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    /// Index of the job in the configuration.
    pub job: usize,
    /// How it was assigned.
    pub via: Via,
}

/// Index of the first job with a rule matching `p`.
pub fn direct_match(
    jobs: &[CompiledJob],
    p: &ProcInfo,
    parent_comm: Option<&str>,
) -> Option<usize> {
    jobs.iter()
        .position(|j| j.rules.iter().any(|r| r.matches(p, parent_comm)))
}

/// Maximum ancestry depth followed.
const MAX_DEPTH: usize = 256;

/// Classifies the processes in `pids` (processed oldest first, so parents
/// precede children), updating `assign`. `previous` holds assignments from
/// before a reload, keyed by pid, with the previous job's name; it is used
/// only for orphans (see the module documentation).
pub fn classify(
    jobs: &[CompiledJob],
    procs: &HashMap<u32, ProcInfo>,
    pids: &[u32],
    assign: &mut HashMap<u32, Assignment>,
    previous: &HashMap<u32, (String, Via)>,
) {
    let mut order: Vec<&ProcInfo> = pids.iter().filter_map(|p| procs.get(p)).collect();
    order.sort_by_key(|p| (p.start_time, p.pid));
    for p in order {
        assign.remove(&p.pid);
        let parent_comm = procs.get(&p.ppid).map(|pp| pp.comm.as_str());
        if let Some(j) = direct_match(jobs, p, parent_comm) {
            assign.insert(
                p.pid,
                Assignment {
                    job: j,
                    via: Via::Rule,
                },
            );
            continue;
        }
        if p.kernel_thread {
            continue;
        }
        // Nearest assigned ancestor.
        let mut cur = p.ppid;
        let mut found = None;
        let mut traced = false;
        for _ in 0..MAX_DEPTH {
            if cur <= 1 || cur == p.pid {
                break;
            }
            let Some(anc) = procs.get(&cur) else { break };
            if let Some(a) = assign.get(&cur) {
                found = Some(*a);
                traced = true;
                break;
            }
            if anc.start_time > p.start_time {
                break; // not really an ancestor (pid reuse race)
            }
            cur = anc.ppid;
        }
        match found {
            Some(a) if jobs[a.job].config.include_children => {
                assign.insert(
                    p.pid,
                    Assignment {
                        job: a.job,
                        via: Via::Parent,
                    },
                );
            }
            Some(_) => {}
            None if !traced => {
                if let Some((name, Via::Parent)) = previous.get(&p.pid) {
                    if let Some(j) = jobs
                        .iter()
                        .position(|j| &j.config.name == name && j.config.include_children)
                    {
                        assign.insert(
                            p.pid,
                            Assignment {
                                job: j,
                                via: Via::Parent,
                            },
                        );
                    }
                }
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_(pid: u32, comm: &str, ppid: u32, start: u64) -> ProcInfo {
        ProcInfo {
            pid,
            start_time: start,
            comm: comm.into(),
            cmdline: format!("/usr/bin/{comm} --flag value"),
            uid: 1000,
            gid: 100,
            sid: 7,
            ppid,
            env: vec![
                ("ROLE".into(), "frontend".into()),
                ("EMPTY".into(), String::new()),
            ],
            kernel_thread: false,
            cpu_ticks: 0,
            prev_cpu_ticks: 0,
            rss_pages: 0,
            verified: true,
        }
    }

    fn rule(f: impl FnOnce(&mut ProcessRule)) -> CompiledRule {
        let mut r = ProcessRule::default();
        f(&mut r);
        CompiledRule::new(&r).unwrap()
    }

    fn job(name: &str, include_children: bool, rules: Vec<ProcessRule>) -> CompiledJob {
        CompiledJob::new(&ProcessJob {
            name: name.into(),
            rules,
            include_children,
            cpu: None,
        })
        .unwrap()
    }

    fn r(f: impl FnOnce(&mut ProcessRule)) -> ProcessRule {
        let mut r = ProcessRule::default();
        f(&mut r);
        r
    }

    #[test]
    fn every_field() {
        let p = proc_(5, "nginx", 1, 10);
        let yes = |c: CompiledRule, parent: Option<&str>| c.matches(&p, parent);
        assert!(yes(rule(|r| r.name = Some("nginx".into())), None));
        assert!(!yes(rule(|r| r.name = Some("nginx2".into())), None));
        assert!(yes(rule(|r| r.name = Some("ng*".into())), None));
        assert!(yes(
            rule(|r| r.cmdline = Some("*--flag value".into())),
            None
        ));
        assert!(!yes(rule(|r| r.cmdline = Some("*--other*".into())), None));
        assert!(yes(rule(|r| r.uid = Some(1000)), None));
        assert!(!yes(rule(|r| r.uid = Some(0)), None));
        assert!(yes(rule(|r| r.gid = Some(100)), None));
        assert!(!yes(rule(|r| r.gid = Some(101)), None));
        assert!(yes(rule(|r| r.session = Some(7)), None));
        assert!(!yes(rule(|r| r.session = Some(8)), None));
        assert!(yes(rule(|r| r.env = vec!["ROLE".into()]), None));
        assert!(yes(rule(|r| r.env = vec!["ROLE=frontend".into()]), None));
        assert!(yes(rule(|r| r.env = vec!["ROLE=front*".into()]), None));
        assert!(!yes(rule(|r| r.env = vec!["ROLE=back*".into()]), None));
        assert!(!yes(rule(|r| r.env = vec!["MISSING".into()]), None));
        assert!(yes(rule(|r| r.env = vec!["EMPTY=".into()]), None));
        assert!(yes(
            rule(|r| r.parent = Some("sys*".into())),
            Some("systemd")
        ));
        assert!(!yes(rule(|r| r.parent = Some("sys*".into())), Some("bash")));
        assert!(!yes(rule(|r| r.parent = Some("sys*".into())), None));
        // AND of fields
        assert!(yes(
            rule(|r| {
                r.name = Some("nginx".into());
                r.uid = Some(1000)
            }),
            None
        ));
        assert!(!yes(
            rule(|r| {
                r.name = Some("nginx".into());
                r.uid = Some(0)
            }),
            None
        ));
        // kernel threads never match
        let mut k = proc_(2, "kthreadd", 0, 1);
        k.kernel_thread = true;
        assert!(!rule(|r| r.name = Some("*".into())).matches(&k, None));
    }

    fn table(ps: Vec<ProcInfo>) -> HashMap<u32, ProcInfo> {
        ps.into_iter().map(|p| (p.pid, p)).collect()
    }

    #[test]
    fn precedence_and_children() {
        let jobs = vec![
            job("first", true, vec![r(|r| r.name = Some("app*".into()))]),
            job(
                "second",
                true,
                vec![
                    r(|r| r.name = Some("apple".into())),
                    r(|r| r.name = Some("pie".into())),
                ],
            ),
            job("nokids", false, vec![r(|r| r.name = Some("lonely".into()))]),
        ];
        let procs = table(vec![
            proc_(1, "init", 0, 1),
            proc_(10, "apple", 1, 10),     // both jobs match -> first
            proc_(11, "sh", 10, 11),       // child of apple -> first via parent
            proc_(12, "grandkid", 11, 12), // grandchild -> first
            proc_(13, "pie", 10, 13),      // own rule wins over parent
            proc_(20, "lonely", 1, 20),
            proc_(21, "kid", 20, 21), // nokids: not included
            proc_(30, "other", 1, 30),
        ]);
        let mut assign = HashMap::new();
        let pids: Vec<u32> = procs.keys().copied().collect();
        classify(&jobs, &procs, &pids, &mut assign, &HashMap::new());
        let a = |pid| assign.get(&pid).copied();
        assert_eq!(
            a(10),
            Some(Assignment {
                job: 0,
                via: Via::Rule
            })
        );
        assert_eq!(
            a(11),
            Some(Assignment {
                job: 0,
                via: Via::Parent
            })
        );
        assert_eq!(
            a(12),
            Some(Assignment {
                job: 0,
                via: Via::Parent
            })
        );
        assert_eq!(
            a(13),
            Some(Assignment {
                job: 1,
                via: Via::Rule
            })
        );
        assert_eq!(
            a(20),
            Some(Assignment {
                job: 2,
                via: Via::Rule
            })
        );
        assert_eq!(a(21), None);
        assert_eq!(a(30), None);
        assert_eq!(a(1), None);
    }

    #[test]
    fn orphan_keeps_job_only_if_untraceable() {
        let jobs = vec![job("a", true, vec![r(|r| r.name = Some("daemon".into()))])];
        // Child 11 was re-parented to init after its parent exited.
        let procs = table(vec![proc_(1, "init", 0, 1), proc_(11, "worker", 1, 11)]);
        let mut assign = HashMap::new();
        let prev: HashMap<u32, (String, Via)> = [(11, ("a".to_string(), Via::Parent))].into();
        classify(&jobs, &procs, &[11], &mut assign, &prev);
        assert_eq!(
            assign.get(&11),
            Some(&Assignment {
                job: 0,
                via: Via::Parent
            })
        );
        // Job renamed away: the orphan is released.
        let jobs2 = vec![job("b", true, vec![r(|r| r.name = Some("daemon".into()))])];
        let mut assign = HashMap::new();
        classify(&jobs2, &procs, &[11], &mut assign, &prev);
        assert_eq!(assign.get(&11), None);
    }

    #[test]
    fn parent_rule_uses_parent_comm() {
        let jobs = vec![job(
            "kids",
            false,
            vec![r(|r| r.parent = Some("super*".into()))],
        )];
        let procs = table(vec![proc_(10, "supervisor", 1, 10), proc_(11, "x", 10, 11)]);
        let mut assign = HashMap::new();
        classify(&jobs, &procs, &[10, 11], &mut assign, &HashMap::new());
        assert_eq!(assign.get(&11).map(|a| a.job), Some(0));
        assert_eq!(assign.get(&10), None);
    }
}
