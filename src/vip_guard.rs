//! The VIP guard: while headroomd is down, VIP traffic must not reach this
//! host's stack through the fail-open bridge.
//!
//! When the VIP owner dies, clients keep sending to its MAC until the new
//! owner's gratuitous ARPs arrive (one failure timeout and a little more).
//! With the XDP programs gone, those frames cross the fail-open bridge to
//! the host, which holds the VIP (on `lo`) but not the connections the
//! owner had placed on other servers, and answers every one with a reset:
//! one owner crash would reset the active connections of the whole pool
//! (measured: a client's ACK to a surviving server, retransmitted into the
//! window, reset its connection). Dropped instead, the client retransmits
//! and its next try reaches the new owner, which places it mid-flow where
//! the old owner did.
//!
//! The guard is one nftables rule on the bridge family's forward hook,
//! installed while headroomd runs and left in place when it stops or
//! crashes: it matches only frames the kernel *bridges* from the outer
//! interface, which happens only in fail-open (while headroomd runs, the
//! workers carry every frame). Traffic to the host's own addresses still
//! fails open. `nft list table bridge headroom` shows its drop counter;
//! `nft delete table bridge headroom` removes it.

use std::{io::Write, net::Ipv4Addr, process::Command};

/// The nftables table (bridge family) the guard owns.
pub const TABLE: &str = "headroom";

/// The nftables script that replaces the guard in one transaction: for
/// `vips` arriving on `outer`, or no table at all when `vips` is empty.
pub fn ruleset(outer: &str, vips: &[Ipv4Addr]) -> String {
    // Declaring the table first makes the delete succeed when it is absent.
    let mut s = format!("table bridge {TABLE} {{}}\ndelete table bridge {TABLE}\n");
    if vips.is_empty() {
        return s;
    }
    let mut set: Vec<String> = vips.iter().map(|v| v.to_string()).collect();
    set.sort();
    set.dedup();
    s.push_str(&format!(
        "table bridge {TABLE} {{\n  chain failopen {{\n    \
         type filter hook forward priority 0; policy accept;\n    \
         iifname \"{}\" ip daddr {{ {} }} counter drop \
         comment \"VIP traffic while headroomd is down: dropped, not reset by this host\"\n  \
         }}\n}}\n",
        outer.replace('"', ""),
        set.join(", ")
    ));
    s
}

/// The VIPs of a config (every `[[vips]]` entry).
pub fn vips(cfg: &headroom_config::Config) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = cfg.vips.iter().map(|s| s.vip).collect();
    v.sort();
    v.dedup();
    v
}

/// Why the guard could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// `nft` could not be run.
    #[error(
        "running nft: {0} (install nftables: apt-get install nftables); without the guard, \
         a crash of the VIP owner resets connections to the other servers"
    )]
    Spawn(std::io::Error),
    /// `nft` refused the script.
    #[error("nft refused the VIP guard ({status}): {stderr}")]
    Refused {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it said.
        stderr: String,
    },
}

/// Installs (or, with no VIPs, removes) the guard in this network namespace.
pub fn install(outer: &str, vips: &[Ipv4Addr]) -> Result<(), GuardError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(GuardError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(ruleset(outer, vips).as_bytes())
            .map_err(GuardError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(GuardError::Spawn)?;
    if !out.status.success() {
        return Err(GuardError::Refused {
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_replaces_the_table_in_one_transaction() {
        let v = [Ipv4Addr::new(10, 0, 0, 9), Ipv4Addr::new(10, 0, 0, 1)];
        let s = ruleset("eth0", &[v[0], v[1], v[0]]);
        assert!(s.starts_with("table bridge headroom {}\ndelete table bridge headroom\n"));
        assert!(
            s.contains("iifname \"eth0\" ip daddr { 10.0.0.1, 10.0.0.9 } counter drop"),
            "{s}"
        );
        assert!(s.contains("hook forward"));
        // No VIPs: the table goes.
        assert_eq!(
            ruleset("eth0", &[]),
            "table bridge headroom {}\ndelete table bridge headroom\n"
        );
    }
}
