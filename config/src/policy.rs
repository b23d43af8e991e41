//! The node file and the pool policy.
//!
//! A server's configuration is two documents with one schema: its *node
//! file* (identity, addresses, interfaces, cores, rings, keys, seed peers,
//! local paths) and the *pool policy* (jobs with their flow and process
//! rules and CPU policies, pipes and bookings, VIPs and director settings,
//! triggers, schedules and variants), which the exchange distributes and
//! every server runs the same version of. The sections in
//! [`POLICY_SECTIONS`] are the policy's; a node file may carry them too, as
//! the *initial policy* used only while the pool has none (so one server,
//! and the demo, work from one file).
//!
//! The server runs the node file composed with the pool's active policy
//! ([`Config::with_policy`]): the policy's sections replace the node
//! file's whole, absent ones are empty.

use std::path::Path;

use serde::Deserialize;

use crate::{
    error::ConfigError,
    locate::{line_of, render, Seg},
    schema::deserialize,
    Config, JobConfig, PipeConfig,
};

/// Top-level sections that belong to the pool policy.
pub const POLICY_SECTIONS: [&str; 8] = [
    "job", "pipe", "vip", "director", "pool", "trigger", "schedule", "variant",
];

/// The pool policy document: the policy's sections of [`Config`].
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct PolicyDoc {
    #[serde(default, rename = "job")]
    jobs: Vec<JobConfig>,
    #[serde(default, rename = "pipe")]
    pipes: Vec<PipeConfig>,
    #[serde(default, rename = "vip")]
    vips: Vec<crate::vip::VipService>,
    #[serde(default)]
    director: crate::vip::DirectorSettings,
    #[serde(default)]
    pool: crate::triggers::PoolSettings,
    #[serde(default, rename = "trigger")]
    triggers: Vec<crate::triggers::TriggerConfig>,
    #[serde(default, rename = "schedule")]
    schedules: Vec<crate::triggers::ScheduleConfig>,
    #[serde(default, rename = "variant")]
    variants: Vec<crate::triggers::VariantConfig>,
}

impl Config {
    /// This configuration with its policy sections replaced by those of the
    /// policy document `doc` (named `file` in errors), validated whole.
    /// Errors point at `doc`'s line and field (`file:line: field: message`);
    /// a section of the node file in `doc` is refused by name.
    pub fn with_policy(&self, doc: &str, file: &Path) -> Result<Config, ConfigError> {
        node_sections(doc, file)?;
        let (p, upgraded) = deserialize::<PolicyDoc>(doc, file)?;
        let mut cfg = self.clone();
        cfg.jobs = p.jobs;
        cfg.pipes = p.pipes;
        cfg.vips = p.vips;
        cfg.director = p.director;
        cfg.pool = p.pool;
        cfg.triggers = p.triggers;
        cfg.schedules = p.schedules;
        cfg.variants = p.variants;
        cfg.validate().map_err(|(path, message)| {
            let in_policy =
                matches!(path.first(), Some(Seg::Key(k)) if POLICY_SECTIONS.contains(k));
            ConfigError::Invalid {
                file: file.to_owned(),
                line: if in_policy {
                    line_of(&upgraded.src, &path)
                } else {
                    0
                },
                field: upgraded.as_written(render(&path)),
                message: if in_policy {
                    message
                } else {
                    format!("{message} (with this node file)")
                },
            }
        })?;
        cfg.warnings = upgraded
            .warnings
            .iter()
            .map(|w| format!("{}:{w}", file.display()))
            .collect();
        Ok(cfg)
    }

    /// Whether `other` has the same policy sections.
    pub fn same_policy(&self, other: &Config) -> bool {
        self.jobs == other.jobs
            && self.pipes == other.pipes
            && self.vips == other.vips
            && self.director == other.director
            && self.pool == other.pool
            && self.triggers == other.triggers
            && self.schedules == other.schedules
            && self.variants == other.variants
    }

    /// Whether any policy section is set (the node file carries an initial
    /// policy, or a pool policy is composed in).
    pub fn has_policy(&self) -> bool {
        !(self.jobs.is_empty()
            && self.pipes.is_empty()
            && self.vips.is_empty()
            && self.triggers.is_empty()
            && self.schedules.is_empty()
            && self.variants.is_empty())
    }
}

/// The policy sections of node file `src` as a policy document (its
/// initial policy), comments kept; None when it has none.
pub fn initial_policy(src: &str) -> Option<String> {
    let mut doc = src.parse::<toml_edit::DocumentMut>().ok()?;
    let node_keys: Vec<String> = doc
        .as_table()
        .iter()
        .map(|(k, _)| k.to_string())
        .filter(|k| !POLICY_SECTIONS.contains(&k.as_str()))
        .collect();
    for k in &node_keys {
        doc.as_table_mut().remove(k);
    }
    if doc.as_table().is_empty() {
        return None;
    }
    Some(doc.to_string().trim_start().to_string())
}

/// Refuses node-file sections in a policy document, naming the first.
fn node_sections(doc: &str, file: &Path) -> Result<(), ConfigError> {
    let Ok(parsed) = toml_edit::ImDocument::parse(doc) else {
        // Syntax errors are reported with position by the deserialiser.
        return Ok(());
    };
    for (key, _) in parsed.as_table().iter() {
        if !POLICY_SECTIONS.contains(&key) {
            let at = parsed
                .as_table()
                .key(key)
                .and_then(|k| k.span())
                .map_or(0, |s| {
                    doc.as_bytes()[..s.start.min(doc.len())]
                        .iter()
                        .filter(|&&b| b == b'\n')
                        .count()
                        + 1
                });
            return Err(ConfigError::Invalid {
                file: file.to_owned(),
                line: at,
                field: key.to_string(),
                message: format!(
                    "belongs in the node file, not the pool policy (a policy holds only {})",
                    POLICY_SECTIONS.join(", ")
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = r#"
[node]
id = 1
address = "10.0.0.1"

[interfaces]
outer = "eth0"
inner = "hr0"

[[pipe]]
name = "wan"
capacity = "20Mbit"

# gold gets most of the pipe
[[job]]
name = "gold"
[[job.flow]]
protocol = "tcp"
local_port = "5001"
[[job.booking]]
pipe = "wan"
rate = "12Mbit"
"#;

    fn node() -> Config {
        Config::parse(NODE, Path::new("node.toml")).unwrap()
    }

    #[test]
    fn the_initial_policy_is_the_node_files_policy_sections() {
        let p = initial_policy(NODE).unwrap();
        assert!(p.contains("[[job]]") && p.contains("[[pipe]]"), "{p}");
        assert!(p.contains("# gold gets most"), "comments kept: {p}");
        assert!(!p.contains("[node]") && !p.contains("[interfaces]"), "{p}");
        // Composing it back gives the node file's configuration.
        let c = node().with_policy(&p, Path::new("p.toml")).unwrap();
        assert_eq!(c, node());
        assert!(initial_policy("[node]\nid = 1\n").is_none());
    }

    #[test]
    fn a_policy_replaces_every_policy_section() {
        let doc = r#"
[[pipe]]
name = "wan"
capacity = "30Mbit"

[[job]]
name = "bronze"
booking = [{ pipe = "wan", rate = "8Mbit" }]
"#;
        let c = node().with_policy(doc, Path::new("p.toml")).unwrap();
        assert_eq!(c.job_names(), vec!["default", "bronze"]);
        assert_eq!(c.pipes[0].capacity.to_string(), "30Mbit");
        assert_eq!(c.node, node().node);
        // An empty policy empties them.
        let c = node().with_policy("", Path::new("p.toml")).unwrap();
        assert!(!c.has_policy());
    }

    #[test]
    fn errors_point_into_the_policy_document() {
        let bad = "[[pipe]]\nname = \"wan\"\ncapacity = \"20Mbit\"\n\n[[job]]\nname = \"a\"\nbooking = [{ pipe = \"nope\", rate = \"1Mbit\" }]\n";
        let e = node().with_policy(bad, Path::new("p.toml")).unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("p.toml:7: job[0].booking"), "{s}");
        let e = node()
            .with_policy("[[job]]\nname = 3\n", Path::new("p.toml"))
            .unwrap_err();
        assert!(e.to_string().starts_with("p.toml:2:"), "{e}");
        let e = node()
            .with_policy(
                "[[job]]\nname = \"x\"\n\n[workers]\ncores = [0]\n",
                Path::new("p.toml"),
            )
            .unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with("p.toml:4: workers: belongs in the node file"),
            "{s}"
        );
    }
}
