//! One headroomd per interface, per CPU record and per history database. A
//! second daemon given the outer or inner interface of a running one (in
//! the same network namespace), the same cgroup record or the same history
//! file fails at start with the holder's pid, before it attaches or moves
//! anything: two daemons would fight over the XDP programs, take each
//! other's cgroups over, or mix their series and journals in one file.
//!
//! The locks are `flock(2)`s on files under [`LOCK_DIR`] (and beside the
//! CPU record), so they go with the process, also when it is killed.

use std::{
    fs::File,
    io::{Read, Seek, Write},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use headroom_config::Config;
use nix::fcntl::{Flock, FlockArg};

/// Where the interface locks live.
pub const LOCK_DIR: &str = "/run/lock/headroom";

/// The locks a running headroomd holds (released on drop or exit).
#[derive(Debug)]
pub struct InstanceLock {
    _held: Vec<Flock<File>>,
}

/// What one lock protects, for the error message.
struct Claim {
    path: PathBuf,
    what: String,
}

/// Takes every lock `cfg` needs (`cpu`: whether CPU scheduling runs, i.e.
/// the cgroup record is used).
pub fn acquire(cfg: &Config, cpu: bool) -> Result<InstanceLock, String> {
    let netns = std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino())
        .map_err(|e| format!("reading /proc/self/ns/net: {e}"))?;
    let mut claims: Vec<Claim> = [&cfg.interfaces.outer, &cfg.interfaces.inner]
        .into_iter()
        .map(|ifname| Claim {
            path: Path::new(LOCK_DIR).join(format!("net-{netns}-{ifname}.lock")),
            what: format!("interface {ifname} in this network namespace"),
        })
        .collect();
    if cpu {
        let record = cfg.cpu.state_file();
        claims.push(Claim {
            path: record.with_extension("lock"),
            what: format!("the CPU record {}", record.display()),
        });
    }
    if cfg.history.enabled {
        // Under LOCK_DIR, named by the file's absolute path: its own
        // directory may be read-only (the store then waits and retries).
        let db = &cfg.history.path;
        let abs = db
            .parent()
            .and_then(|d| std::fs::canonicalize(d).ok())
            .zip(db.file_name())
            .map_or_else(|| db.clone(), |(d, f)| d.join(f));
        use sha2::Digest;
        let digest = sha2::Sha256::digest(abs.as_os_str().as_encoded_bytes());
        let name: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        claims.push(Claim {
            path: Path::new(LOCK_DIR).join(format!("history-{name}.lock")),
            what: format!("the history database {}", abs.display()),
        });
    }
    let mut held = Vec::new();
    for c in claims {
        held.push(take(&c)?);
    }
    Ok(InstanceLock { _held: held })
}

fn take(c: &Claim) -> Result<Flock<File>, String> {
    if let Some(dir) = c.path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&c.path)
        .map_err(|e| format!("opening {}: {e}", c.path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            // The holder's pid, for the next one's message.
            let f: &mut File = &mut lock;
            let _ = f.set_len(0);
            let _ = f.rewind();
            let _ = writeln!(f, "{}", std::process::id());
            Ok(lock)
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            let holder = if pid.is_empty() {
                "another headroomd".to_string()
            } else {
                format!("another headroomd (pid {pid})")
            };
            Err(format!(
                "{holder} uses {} (lock {}): stop it first, or configure this one differently",
                c.what,
                c.path.display()
            ))
        }
        Err((_, e)) => Err(format!("locking {}: {e}", c.path.display())),
    }
}
