//! The version and source commit every Headroom binary reports (`--version`,
//! the start-up log line), recorded by this crate's build script.

#[cfg(test)]
mod commit;

/// The workspace version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Abbreviated commit the binaries were built from, or "unknown".
pub const COMMIT: &str = env!("HEADROOM_COMMIT");

/// What `--version` prints after the program's name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("HEADROOM_COMMIT"),
    ")"
);

#[cfg(test)]
mod tests {
    use std::{path::Path, process::Command};

    use super::commit::{detect, UNKNOWN};

    fn workspace() -> &'static Path {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
    }

    #[test]
    fn the_recorded_commit_is_the_checkouts() {
        let out = Command::new("git")
            .arg("-C")
            .arg(workspace())
            .args(["rev-parse", "--short=12", "HEAD"])
            .output();
        match out {
            // A checkout (CI's fresh clone): the build recorded its HEAD,
            // unless a commit was made since (then the next build re-runs).
            Ok(o) if o.status.success() => {
                let head = String::from_utf8_lossy(&o.stdout).trim().to_string();
                let state = detect(workspace()).expect("the workspace is a checkout");
                assert_eq!(state.commit, head);
                assert!(state
                    .watch
                    .iter()
                    .any(|p| p.ends_with("HEAD") && p.exists()));
                assert_eq!(super::COMMIT.len(), 12, "{}", super::COMMIT);
            }
            // A source tarball: nothing to compare with.
            _ => assert_eq!(super::COMMIT, UNKNOWN),
        }
        assert!(super::LONG_VERSION.starts_with(super::VERSION));
        assert!(super::LONG_VERSION.contains(super::COMMIT));
    }

    #[test]
    fn a_tree_that_is_not_a_checkouts_top_is_unknown() {
        // Inside the checkout but not its top (a tarball unpacked in some
        // other repository looks like this).
        let nested = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        assert!(detect(&nested).is_none());
        // Outside any checkout.
        let bare = std::env::temp_dir().join(format!("hr-buildinfo-{}", std::process::id()));
        std::fs::create_dir_all(&bare).unwrap();
        let r = detect(&bare);
        let _ = std::fs::remove_dir_all(&bare);
        assert!(r.is_none(), "{r:?}");
    }
}
