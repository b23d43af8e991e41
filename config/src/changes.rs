//! What a reload changes: the difference between the running configuration
//! and the file, split into what a running daemon applies (jobs, their flow
//! and process rules, bookings) and what takes effect only at the next start.
//! The daemon logs it and `headroomctl reload` prints it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Config, JobConfig};

/// The difference between two configurations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigChanges {
    /// Jobs only in the new file.
    pub jobs_added: Vec<String>,
    /// Jobs only in the old one.
    pub jobs_removed: Vec<String>,
    /// Jobs in both whose definition changed, with the parts that did.
    pub jobs_changed: Vec<JobChange>,
    /// Whether the order of the jobs both files have changed (the first job
    /// with a matching rule takes a flow or process).
    pub job_order_changed: bool,
    /// Booking changes, one line each ("web on uplink: 40% -> 30%").
    pub bookings: Vec<String>,
    /// Process-rule changes, one line per job ("web: 1 -> 2 rules").
    pub process_rules: Vec<String>,
    /// Pipe changes applied live ("uplink: capacity 20Mbit -> 30Mbit").
    #[serde(default)]
    pub pipes: Vec<String>,
    /// VIP service changes applied live ("web: added", "web: changed").
    #[serde(default)]
    pub vips: Vec<String>,
    /// Pool-wide settings applied live ("enforcement on -> off").
    #[serde(default)]
    pub pool: Vec<String>,
    /// Pool key changes, by key id ("signs with 1a2b3c4d (was 5e6f7a8b)"):
    /// filled in by the daemon, which re-reads the key files on every
    /// reload (a file's content may change under the same name).
    #[serde(default)]
    pub pool_keys: Vec<String>,
    /// Things the operator should know that change nothing (a node file's
    /// policy sections while the pool runs a policy of its own).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Changed fields a running daemon does not apply: they take effect at
    /// the next start ("workers.cores", "pipe uplink: capacity 100Mbit -> 200Mbit").
    pub restart_required: Vec<String>,
}

/// One job whose definition changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobChange {
    /// The job.
    pub name: String,
    /// What changed: "flow rules", "bookings", "process rules", "cpu
    /// policy", "include_children".
    pub parts: Vec<String>,
}

/// Pushes `section.field` for every listed field that differs, or `[section]`
/// when the sections differ in a field the list does not name.
macro_rules! fields {
    ($out:expr, $old:expr, $new:expr, $section:literal, [$($f:ident),* $(,)?]) => {{
        if $old != $new {
            let before = $out.len();
            $(if $old.$f != $new.$f { $out.push(concat!($section, ".", stringify!($f)).to_string()); })*
            if $out.len() == before {
                $out.push(concat!("[", $section, "]").to_string());
            }
        }
    }};
}

impl ConfigChanges {
    /// What changes from `old` to `new`.
    pub fn between(old: &Config, new: &Config) -> ConfigChanges {
        let mut c = ConfigChanges::default();
        let find = |jobs: &'_ [JobConfig], name: &str| -> Option<usize> {
            jobs.iter().position(|j| j.name == name)
        };
        for j in &new.jobs {
            if find(&old.jobs, &j.name).is_none() {
                c.jobs_added.push(j.name.clone());
            }
        }
        for j in &old.jobs {
            match find(&new.jobs, &j.name) {
                None => c.jobs_removed.push(j.name.clone()),
                Some(i) => c.job(j, &new.jobs[i]),
            }
        }
        for j in &new.jobs {
            if c.jobs_added.contains(&j.name) {
                for b in &j.bookings {
                    c.bookings
                        .push(format!("{} on {}: added {}", j.name, b.pipe, booking(b)));
                }
                if !j.process_rules.is_empty() {
                    c.process_rules.push(format!(
                        "{}: 0 -> {} rules",
                        j.name,
                        j.process_rules.len()
                    ));
                }
            }
        }
        for j in &old.jobs {
            if c.jobs_removed.contains(&j.name) {
                for b in &j.bookings {
                    c.bookings
                        .push(format!("{} on {}: removed", j.name, b.pipe));
                }
                if !j.process_rules.is_empty() {
                    c.process_rules.push(format!(
                        "{}: {} -> 0 rules",
                        j.name,
                        j.process_rules.len()
                    ));
                }
            }
        }
        let common = |jobs: &[JobConfig], other: &[JobConfig]| -> Vec<String> {
            jobs.iter()
                .filter(|j| find(other, &j.name).is_some())
                .map(|j| j.name.clone())
                .collect()
        };
        c.job_order_changed = common(&old.jobs, &new.jobs) != common(&new.jobs, &old.jobs);
        c.start_only(old, new);
        c
    }

    /// The parts of job `old` that `new` changes.
    fn job(&mut self, old: &JobConfig, new: &JobConfig) {
        let mut parts = Vec::new();
        if old.flow_rules != new.flow_rules {
            parts.push("flow rules".to_string());
        }
        if old.bookings != new.bookings {
            parts.push("bookings".to_string());
            for b in &new.bookings {
                match old.bookings.iter().find(|o| o.pipe == b.pipe) {
                    None => self.bookings.push(format!(
                        "{} on {}: added {}",
                        new.name,
                        b.pipe,
                        booking(b)
                    )),
                    Some(o) if o != b => self.bookings.push(format!(
                        "{} on {}: {} -> {}",
                        new.name,
                        b.pipe,
                        booking(o),
                        booking(b)
                    )),
                    Some(_) => {}
                }
            }
            for o in &old.bookings {
                if !new.bookings.iter().any(|b| b.pipe == o.pipe) {
                    self.bookings
                        .push(format!("{} on {}: removed", new.name, o.pipe));
                }
            }
        }
        if old.process_rules != new.process_rules {
            parts.push("process rules".to_string());
            self.process_rules.push(format!(
                "{}: {} -> {} rules",
                new.name,
                old.process_rules.len(),
                new.process_rules.len()
            ));
        }
        if old.cpu != new.cpu {
            parts.push("cpu policy".to_string());
        }
        if old.include_children != new.include_children {
            parts.push("include_children".to_string());
        }
        if !parts.is_empty() {
            self.jobs_changed.push(JobChange {
                name: new.name.clone(),
                parts,
            });
        }
    }

    /// Fields read at start only.
    fn start_only(&mut self, old: &Config, new: &Config) {
        let out = &mut self.restart_required;
        fields!(out, old.node, new.node, "node", [id, name, address, bypass]);
        fields!(
            out,
            old.interfaces,
            new.interfaces,
            "interfaces",
            [outer, inner, xdp_mode]
        );
        fields!(
            out,
            old.workers,
            new.workers,
            "workers",
            [
                cores,
                queues,
                allow_unserved_queues,
                batch_size,
                ring_size,
                fill_size,
                frame_size,
                frame_count,
                zero_copy,
                fast_path,
                fast_path_flows,
                max_memory_share,
                poll_timeout,
                publish_interval,
                pacer_burst,
                pacer_max_queue_delay
            ]
        );
        fields!(
            out,
            old.classifier,
            new.classifier,
            "classifier",
            [flow_capacity, idle_timeout]
        );
        fields!(
            out,
            old.control,
            new.control,
            "control",
            [socket, high_freq_interval, low_freq_interval, group]
        );
        fields!(out, old.metrics, new.metrics, "metrics", [listen]);
        fields!(
            out,
            old.history,
            new.history,
            "history",
            [
                enabled,
                path,
                retention_1s,
                retention_1m,
                retention_1h,
                max_size,
                queue,
                backlog
            ]
        );
        fields!(
            out,
            old.console,
            new.console,
            "console",
            [
                listen,
                users,
                tls_cert,
                tls_key,
                session,
                login_failures_per_minute
            ]
        );
        if old.pool.enforcement != new.pool.enforcement {
            self.pool.push(format!(
                "enforcement {} -> {}",
                old.pool.enforcement, new.pool.enforcement
            ));
        }
        let (op, np) = (&old.pool, &new.pool);
        if op.timezone != np.timezone {
            self.pool
                .push(format!("timezone {} -> {}", op.timezone, np.timezone));
        }
        for (what, a, b) in [
            ("restore_after", op.restore_after, np.restore_after),
            (
                "schedule_tolerance",
                op.schedule_tolerance,
                np.schedule_tolerance,
            ),
        ] {
            if a != b {
                self.pool.push(format!(
                    "{what} {} -> {}",
                    humantime::format_duration(a),
                    humantime::format_duration(b)
                ));
            }
        }
        named(
            &mut self.pool,
            "trigger",
            &old.triggers,
            &new.triggers,
            |t| &t.name,
        );
        named(
            &mut self.pool,
            "schedule",
            &old.schedules,
            &new.schedules,
            |t| &t.name,
        );
        named(
            &mut self.pool,
            "variant",
            &old.variants,
            &new.variants,
            |t| &t.name,
        );
        // With a pool running before and after, the key files are re-read
        // and applied by the reload (key rotation); joining or leaving the
        // pool takes a restart.
        let (mut oe, mut ne) = (old.exchange.clone(), new.exchange.clone());
        if oe.key_file.is_some() && ne.key_file.is_some() {
            (oe.key_file, oe.rotation_key_file) = (None, None);
            (ne.key_file, ne.rotation_key_file) = (None, None);
        }
        fields!(
            out,
            oe,
            ne,
            "exchange",
            [
                port,
                peers,
                key_file,
                rotation_key_file,
                failure_timeout,
                mtu
            ]
        );
        fields!(
            out,
            old.cpu,
            new.cpu,
            "cpu",
            [backend, cgroup_parent, enabled, state_dir, scope]
        );
        let mut live = Vec::new();
        for p in &new.pipes {
            match old.pipes.iter().find(|o| o.name == p.name) {
                None => out.push(format!("pipe {}: added", p.name)),
                Some(o) => {
                    // Capacity and immediate share are the allocator's:
                    // live. What traffic a pipe carries is the workers'.
                    if o.capacity != p.capacity {
                        live.push(format!(
                            "{}: capacity {} -> {}",
                            p.name, o.capacity, p.capacity
                        ));
                    }
                    if o.immediate_share != p.immediate_share {
                        live.push(format!(
                            "{}: immediate_share {}% -> {}%",
                            p.name, o.immediate_share, p.immediate_share
                        ));
                    }
                    if o.remote != p.remote {
                        out.push(format!("pipe {}: remote", p.name));
                    }
                    if o.direction != p.direction {
                        out.push(format!("pipe {}: direction", p.name));
                    }
                }
            }
        }
        for o in &old.pipes {
            if !new.pipes.iter().any(|p| p.name == o.name) {
                out.push(format!("pipe {}: removed", o.name));
            }
        }
        if old.vips != new.vips {
            if old.vips.is_empty() {
                // The workers' director is set up at start.
                out.push("[[vip]] (the first VIP service)".into());
            } else {
                for v in &new.vips {
                    match old.vips.iter().find(|o| o.name == v.name) {
                        None => self.vips.push(format!("{}: added", v.name)),
                        Some(o) if o != v => self.vips.push(format!("{}: changed", v.name)),
                        Some(_) => {}
                    }
                }
                for o in &old.vips {
                    if !new.vips.iter().any(|v| v.name == o.name) {
                        self.vips.push(format!("{}: removed", o.name));
                    }
                }
            }
        }
        if old.director != new.director {
            out.push("[director]".into());
        }
        self.pipes = live;
    }

    /// True when the files configure the same thing.
    pub fn is_empty(&self) -> bool {
        self == &ConfigChanges::default()
    }

    /// What the running daemon applies, one line each (empty: nothing).
    pub fn applied(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.jobs_added.is_empty() {
            lines.push(format!("jobs added: {}", self.jobs_added.join(", ")));
        }
        if !self.jobs_removed.is_empty() {
            lines.push(format!("jobs removed: {}", self.jobs_removed.join(", ")));
        }
        for j in &self.jobs_changed {
            lines.push(format!("job {} changed: {}", j.name, j.parts.join(", ")));
        }
        if self.job_order_changed {
            lines.push("job order changed (the first matching job takes a flow)".into());
        }
        for p in &self.pipes {
            lines.push(format!("pipe {p}"));
        }
        for v in &self.vips {
            lines.push(format!("vip {v}"));
        }
        for p in &self.pool {
            lines.push(format!("pool {p}"));
        }
        for b in &self.bookings {
            lines.push(format!("booking {b}"));
        }
        for p in &self.process_rules {
            lines.push(format!("process rules {p}"));
        }
        for k in &self.pool_keys {
            lines.push(format!("pool keys: {k}"));
        }
        lines
    }

    /// What `headroomctl reload` prints: what was applied, one line each,
    /// then the notes. (A reload that would leave anything for a restart is
    /// refused whole, so nothing here waits for one.)
    pub fn render_text(&self) -> String {
        use std::fmt::Write;
        let applied = self.applied();
        let mut out = if applied.is_empty() {
            String::from("reloaded: no changes\n")
        } else {
            String::from("reloaded:\n")
        };
        for line in applied {
            let _ = writeln!(out, "  {line}");
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }
}

/// "40%", "20Mbit", "40% (cap 80%)".
fn booking(b: &crate::BookingConfig) -> String {
    match b.cap {
        Some(cap) => format!("{} (cap {cap})", b.rate),
        None => b.rate.to_string(),
    }
}

/// One line: what is applied, then what waits for a restart.
impl fmt::Display for ConfigChanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let applied = self.applied();
        if applied.is_empty() && self.restart_required.is_empty() {
            return f.write_str("no changes");
        }
        if applied.is_empty() {
            f.write_str("nothing applied")?;
        } else {
            f.write_str(&applied.join("; "))?;
        }
        if !self.restart_required.is_empty() {
            write!(
                f,
                "; not applied until restart: {}",
                self.restart_required.join(", ")
            )?;
        }
        Ok(())
    }
}

/// "trigger x: added", "trigger y: removed", "trigger z: changed".
fn named<T: PartialEq>(
    out: &mut Vec<String>,
    what: &str,
    old: &[T],
    new: &[T],
    name: impl Fn(&T) -> &String,
) {
    for n in new {
        match old.iter().find(|o| name(o) == name(n)) {
            None => out.push(format!("{what} {}: added", name(n))),
            Some(o) if o != n => out.push(format!("{what} {}: changed", name(n))),
            Some(_) => {}
        }
    }
    for o in old {
        if !new.iter().any(|n| name(n) == name(o)) {
            out.push(format!("{what} {}: removed", name(o)));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn cfg(src: &str) -> Config {
        Config::parse(src, Path::new("t.toml")).unwrap()
    }

    const REFERENCE: &str = include_str!("../headroom.toml");

    #[test]
    fn the_same_file_changes_nothing() {
        let a = cfg(REFERENCE);
        let c = ConfigChanges::between(&a, &a.clone());
        assert!(c.is_empty());
        assert_eq!(c.to_string(), "no changes");
    }

    #[test]
    fn jobs_bookings_and_process_rules_are_named() {
        let old = cfg(REFERENCE);
        // web's booking drops to 30%, batch goes, a new job with a booking
        // and a process rule comes, web gets a second process rule.
        let new_src = REFERENCE
            .replace("rate = \"40%\"", "rate = \"30%\"")
            .replace("name = \"batch\"", "name = \"reports\"")
            // The reference's trigger on batch follows the rename.
            .replace("squeezed(batch,", "squeezed(reports,")
            .replace("job = \"batch\"", "job = \"reports\"")
            .replace(
                "# parent = \"systemd\"\n",
                "# parent = \"systemd\"\n[[job.process]]\nname = \"php-fpm*\"\n",
            );
        let new = cfg(&new_src);
        let c = ConfigChanges::between(&old, &new);
        assert_eq!(c.jobs_added, ["reports"]);
        assert_eq!(c.jobs_removed, ["batch"]);
        assert_eq!(
            c.jobs_changed,
            [JobChange {
                name: "web".into(),
                parts: vec!["bookings".into(), "process rules".into()]
            }]
        );
        assert!(!c.job_order_changed);
        assert!(c
            .bookings
            .contains(&"web on uplink: 40% (cap 80%) -> 30% (cap 80%)".to_string()));
        assert!(c
            .bookings
            .contains(&"reports on uplink: added 20Mbit".to_string()));
        assert!(c.bookings.contains(&"batch on uplink: removed".to_string()));
        assert!(c.process_rules.contains(&"web: 1 -> 2 rules".to_string()));
        assert!(c
            .process_rules
            .contains(&"reports: 0 -> 1 rules".to_string()));
        assert!(c.restart_required.is_empty(), "{:?}", c.restart_required);
        let line = c.to_string();
        assert!(line.starts_with("jobs added: reports; jobs removed: batch; job web changed: bookings, process rules"), "{line}");
    }

    #[test]
    fn start_only_fields_are_named_not_hidden() {
        let old = cfg(REFERENCE);
        let new = cfg(&REFERENCE
            .replace("capacity = \"100Mbit\"", "capacity = \"200Mbit\"")
            .replace("direction = \"out\"", "direction = \"both\"")
            .replace("cores = [1]", "cores = [1, 2]")
            .replace("name = \"web-1\"", "name = \"web-9\"")
            .replace("listen = \"127.0.0.1:7947\"", "listen = \"127.0.0.1:7950\""));
        let c = ConfigChanges::between(&old, &new);
        assert_eq!(
            c.restart_required,
            [
                "node.name",
                "workers.cores",
                "metrics.listen",
                "pipe uplink: direction"
            ]
        );
        // A pipe's capacity is the allocator's: applied live (the reference's
        // variant "night" names the same capacity).
        assert_eq!(
            c.applied(),
            [
                "pipe uplink: capacity 100Mbit -> 200Mbit",
                "pool variant night: changed"
            ]
        );
        assert_eq!(
            c.to_string(),
            "pipe uplink: capacity 100Mbit -> 200Mbit; pool variant night: changed; not applied until restart: node.name, \
             workers.cores, metrics.listen, pipe uplink: direction"
        );
    }

    #[test]
    fn key_files_are_applied_while_a_pool_runs_and_joining_one_needs_a_restart() {
        let old = cfg(REFERENCE);
        let rotating = cfg(&REFERENCE.replace("# rotation_key_file = ", "rotation_key_file = "));
        let c = ConfigChanges::between(&old, &rotating);
        assert!(c.restart_required.is_empty(), "{c}");
        let moved =
            cfg(&REFERENCE.replace("/etc/headroom/pool.key\"", "/etc/headroom/other.key\""));
        assert!(ConfigChanges::between(&old, &moved)
            .restart_required
            .is_empty());
        let alone = cfg(&REFERENCE.replace("key_file = \"/etc/headroom/pool.key\"", ""));
        assert_eq!(
            ConfigChanges::between(&alone, &old).restart_required,
            ["exchange.key_file"]
        );
        let mut c = ConfigChanges::default();
        c.pool_keys
            .push("signs with 1a2b3c4d (was 5e6f7a8b)".into());
        assert_eq!(
            c.to_string(),
            "pool keys: signs with 1a2b3c4d (was 5e6f7a8b)"
        );
    }

    #[test]
    fn reordering_jobs_is_a_change() {
        let src =
            "[node]\nid = 1\naddress = \"10.0.0.1\"\n[interfaces]\nouter = \"a\"\ninner = \"b\"\n";
        let old = cfg(&format!(
            "{src}[[job]]\nname = \"x\"\n[[job]]\nname = \"y\"\n"
        ));
        let new = cfg(&format!(
            "{src}[[job]]\nname = \"y\"\n[[job]]\nname = \"x\"\n"
        ));
        let c = ConfigChanges::between(&old, &new);
        assert!(c.job_order_changed && c.jobs_changed.is_empty());
        assert!(!c.is_empty());
    }
}
