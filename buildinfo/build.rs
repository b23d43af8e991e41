//! Records the commit the workspace is built from as `HEADROOM_COMMIT`
//! ("unknown" outside a git checkout, e.g. from a source tarball; a packager
//! may set `HEADROOM_COMMIT` in the environment instead).
use std::path::Path;

#[path = "src/commit.rs"]
mod commit;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/commit.rs");
    println!("cargo:rerun-if-env-changed=HEADROOM_COMMIT");
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest).join("..");
    let commit = match std::env::var("HEADROOM_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => match commit::detect(&root) {
            Some(state) => {
                for p in state.watch.iter().filter(|p| p.exists()) {
                    println!("cargo:rerun-if-changed={}", p.display());
                }
                state.commit
            }
            None => commit::UNKNOWN.to_string(),
        },
    };
    println!("cargo:rustc-env=HEADROOM_COMMIT={commit}");
}
