//! Which commit a source tree is: shared by the build script (which records
//! it) and the tests (which check how it behaves without a checkout).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// What a build outside a git checkout reports.
pub const UNKNOWN: &str = "unknown";

/// A checkout's commit and the files whose change means another commit
/// (the build script re-runs when one of them changes).
#[derive(Debug)]
pub struct GitState {
    /// Abbreviated commit id (12 hex digits).
    pub commit: String,
    /// `HEAD`, the branch's ref file and `packed-refs`.
    pub watch: Vec<PathBuf>,
}

/// The commit of the checkout whose top directory is `root`; `None` when
/// `root` is not the top of a git checkout (no `.git`, no `git`, or a source
/// tarball unpacked inside some other repository).
pub fn detect(root: &Path) -> Option<GitState> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !text.is_empty()).then_some(text)
    };
    let top = git(&["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != root.canonicalize().ok()? {
        return None;
    }
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // `--git-path` answers relative to `root` in a plain checkout and
    // absolute in a linked worktree.
    let path = |p: &str| git(&["rev-parse", "--git-path", p]).map(|g| root.join(g));
    let mut watch: Vec<PathBuf> = ["HEAD", "packed-refs"]
        .iter()
        .filter_map(|p| path(p))
        .collect();
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.extend(path(&branch));
    }
    Some(GitState { commit, watch })
}
