//! Checks of a valid configuration against the machine it runs on: the
//! interfaces exist (in this network namespace; the inner one only without
//! `[deploy] attach_on_start`, which creates it) and the worker cores are
//! online. `--check-config` reports them as "valid, but on this machine";
//! a start refuses them before anything is attached.

use std::path::Path;

use crate::{
    locate::{line_of, render, Seg},
    Config, ConfigError,
};

impl Config {
    /// What this machine lacks for the configuration, each located in
    /// `file` (empty: nothing).
    pub fn machine_problems(&self, file: &Path) -> Vec<ConfigError> {
        use Seg::{Index as I, Key as K};
        let src = std::fs::read_to_string(file).unwrap_or_default();
        let mut out = Vec::new();
        let mut problem = |path: Vec<Seg>, message: String| {
            out.push(ConfigError::Invalid {
                file: file.to_owned(),
                line: line_of(&src, &path),
                field: render(&path),
                message,
            })
        };
        for (key, name) in [
            ("outer", &self.interfaces.outer),
            ("inner", &self.interfaces.inner),
        ] {
            // `[deploy] attach_on_start` creates the inner interface.
            if key == "inner" && self.deploy.attach_on_start {
                continue;
            }
            if nix::net::if_::if_nametoindex(name.as_str()).is_err() {
                problem(
                    vec![K("interfaces"), K(key)],
                    format!(
                        "no interface {name:?} in this network namespace (`ip link show` lists them)"
                    ),
                );
            }
        }
        if let Some(online) = online_cpus() {
            for (i, c) in self.workers.cores.iter().enumerate() {
                if !online.contains(c) {
                    problem(
                        vec![K("workers"), K("cores"), I(i)],
                        format!(
                            "core {c} is not online on this machine (online: {})",
                            ranges(&online)
                        ),
                    );
                }
            }
        }
        out
    }
}

/// The online CPUs (`/sys/devices/system/cpu/online`, e.g. "0-3,6"), or
/// None when it cannot be read.
fn online_cpus() -> Option<Vec<usize>> {
    parse_cpu_list(
        std::fs::read_to_string("/sys/devices/system/cpu/online")
            .ok()?
            .trim(),
    )
}

/// Parses a kernel CPU list ("0-3,6").
pub(crate) fn parse_cpu_list(s: &str) -> Option<Vec<usize>> {
    let mut v = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 1 << 16 {
                    return None;
                }
                v.extend(a..=b);
            }
            None => v.push(part.parse().ok()?),
        }
    }
    Some(v)
}

/// "0-3,6" again, for messages.
fn ranges(cpus: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_and_print() {
        assert_eq!(parse_cpu_list("0-3,6"), Some(vec![0, 1, 2, 3, 6]));
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(ranges(&[0, 1, 2, 3, 6]), "0-3,6");
    }

    #[test]
    fn a_missing_interface_and_an_offline_core_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[node]\nid = 1\naddress = \"10.0.0.1\"\n[interfaces]\nouter = \"lo\"\n\
             inner = \"hr-nosuch9\"\n[workers]\ncores = [0, 4095]\n",
        )
        .unwrap();
        let cfg = Config::load(&file).unwrap();
        let p: Vec<String> = cfg
            .machine_problems(&file)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].contains(":6: interfaces.inner: no interface \"hr-nosuch9\""),
            "{p:?}"
        );
        assert!(
            p[1].contains(":8: workers.cores[1]: core 4095 is not online"),
            "{p:?}"
        );
    }
}
