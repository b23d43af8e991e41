//! Stable job ids by name: a job keeps its id across reloads (so its
//! cumulative counters stay its own) and ids are never reused.

use std::sync::Arc;

use headroom_config::{net::FlowRule, Config, DEFAULT_JOB};
use headroom_dataplane::classifier::{JobId, RuleSet};

/// The job names seen since start and their ids.
#[derive(Debug, Default)]
pub struct JobRegistry {
    ids: Vec<(String, JobId)>,
}

impl JobRegistry {
    /// The id of `name`, assigning the next free one to a new name.
    pub fn id(&mut self, name: &str) -> JobId {
        if name == DEFAULT_JOB {
            return JobId::DEFAULT;
        }
        if let Some((_, id)) = self.ids.iter().find(|(n, _)| n == name) {
            return *id;
        }
        let id = JobId(self.ids.len() as u16 + 1);
        self.ids.push((name.to_string(), id));
        id
    }

    /// The name of a job id.
    pub fn name_of(&self, id: u16) -> Option<&str> {
        if id == JobId::DEFAULT.0 {
            return Some(DEFAULT_JOB);
        }
        self.ids
            .iter()
            .find(|(_, j)| j.0 == id)
            .map(|(n, _)| n.as_str())
    }

    /// The id of a known job name.
    pub fn lookup(&self, name: &str) -> Option<u16> {
        if name == DEFAULT_JOB {
            return Some(JobId::DEFAULT.0);
        }
        self.ids.iter().find(|(n, _)| n == name).map(|(_, j)| j.0)
    }

    /// Every job name seen since start (the default job not included), in
    /// id order: the config's jobs and those a reload removed.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.ids.iter().map(|(n, _)| n.as_str())
    }

    /// Compiles the config's flow rules with stable ids.
    pub fn rules(&mut self, cfg: &Config) -> Arc<RuleSet> {
        let jobs: Vec<(JobId, Vec<FlowRule>)> = cfg
            .jobs
            .iter()
            .map(|j| (self.id(&j.name), j.flow_rules.clone()))
            .collect();
        // Jobs with a response-time goal are timed by the workers.
        let measured: Vec<JobId> = cfg
            .jobs
            .iter()
            .filter(|j| j.goal.is_some())
            .map(|j| self.id(&j.name))
            .collect();
        Arc::new(RuleSet::compile(&jobs).with_measured(&measured))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_never_reused() {
        let mut r = JobRegistry::default();
        assert_eq!(r.id("default"), JobId::DEFAULT);
        let web = r.id("web");
        let bulk = r.id("bulk");
        assert_eq!((web, bulk), (JobId(1), JobId(2)));
        assert_eq!(r.id("web"), web);
        assert_eq!(r.name_of(2), Some("bulk"));
        assert_eq!(r.name_of(0), Some("default"));
        assert_eq!(r.lookup("bulk"), Some(2));
        assert_eq!(r.lookup("gone"), None);
        assert_eq!(r.id("later"), JobId(3));
        assert_eq!(r.names().collect::<Vec<_>>(), ["web", "bulk", "later"]);
    }
}
