//! Per-interface IP settings under `/proc/sys/net/ipv{4,6}/conf/DEV/`.
//! `/proc/sys/net` shows the network namespace of the reading thread, so
//! this works from a thread that entered another namespace.

use std::{collections::BTreeSet, io, path::PathBuf};

use crate::model::Sysctls;

fn dir(family: &str, dev: &str) -> PathBuf {
    PathBuf::from(format!("/proc/sys/net/{family}/conf/{dev}"))
}

/// Whether IPv6 exists in this namespace.
pub fn ipv6() -> bool {
    dir("ipv6", "all").is_dir()
}

/// Every readable setting of `dev` ("default" for the template new
/// interfaces copy), with the keys that can be written.
pub fn read(dev: &str) -> io::Result<(Sysctls, BTreeSet<String>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Sysctls::new();
    let mut writable = BTreeSet::new();
    for family in ["ipv4", "ipv6"] {
        let d = dir(family, dev);
        let Ok(entries) = std::fs::read_dir(&d) else {
            if family == "ipv4" {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} does not exist", d.display()),
                ));
            }
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let key = format!("{family}/{name}");
            // Some settings refuse to be read (stable_secret when unset).
            let Ok(v) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            if e.metadata()
                .is_ok_and(|m| m.permissions().mode() & 0o200 != 0)
            {
                writable.insert(key.clone());
            }
            out.insert(key, v.trim().to_string());
        }
    }
    Ok((out, writable))
}

/// Writes one setting (`key` as `ipv4/rp_filter`).
pub fn write(dev: &str, key: &str, value: &str) -> io::Result<()> {
    let (family, name) = key
        .split_once('/')
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("bad key {key}")))?;
    let path = dir(family, dev).join(name);
    std::fs::write(&path, value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value} to {}: {e}", path.display()),
        )
    })
}
