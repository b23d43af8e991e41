//! ARP from a client's point of view: one request on the wire, every reply
//! collected (the director tests and benchmark watch who answers for a VIP).

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use headroom::packet::{PacketSocket, ETH_P_ARP};

use crate::{run_in_ns, LabError};

/// MAC of interface `dev` in namespace `ns` (read over netlink there: /sys
/// may show another namespace's devices).
pub fn mac_of(ns: &str, dev: &str) -> Result<[u8; 6], LabError> {
    let d = dev.to_string();
    let found = run_in_ns(ns, move || {
        headroom_deploy::io::Kernel::open()
            .and_then(|mut k| k.links())
            .map(|links| links.into_iter().find(|l| l.name == d).and_then(|l| l.mac))
    })?;
    match found {
        Ok(Some(m)) => Ok(m.0),
        Ok(None) => Err(LabError::Failed {
            cmd: format!("MAC of {dev} in {ns}"),
            status: "no such interface".into(),
            stderr: String::new(),
        }),
        Err(source) => Err(LabError::Spawn {
            cmd: format!("netlink in {ns}"),
            source,
        }),
    }
}

/// Sends one ARP request for `target` from the client's eth0 and collects
/// the replies for `window`: (sender MAC) per reply.
pub fn arp_probe(
    ns: &str,
    src: Ipv4Addr,
    target: Ipv4Addr,
    window: Duration,
) -> Result<Vec<[u8; 6]>, LabError> {
    let mac = mac_of(ns, "eth0")?;
    let probe = run_in_ns(ns, move || -> std::io::Result<Vec<[u8; 6]>> {
        let sock = PacketSocket::open("eth0", Some(ETH_P_ARP))?;
        let mut f = [0u8; 60];
        f[0..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&mac);
        f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
        f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        f[22..28].copy_from_slice(&mac);
        f[28..32].copy_from_slice(&src.octets());
        f[38..42].copy_from_slice(&target.octets());
        sock.send(&f)?;
        let mut replies = Vec::new();
        let end = Instant::now() + window;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut b = [0u8; 128];
            let Some(got) = sock.recv_timeout(&mut b, left)? else {
                continue;
            };
            let is_arp_reply =
                got >= 42 && b[12..14] == ETH_P_ARP.to_be_bytes() && b[20..22] == [0, 2];
            if is_arp_reply && b[28..32] == target.octets() && b[38..42] == src.octets() {
                let mut sha = [0u8; 6];
                sha.copy_from_slice(&b[22..28]);
                replies.push(sha);
            }
        }
        Ok(replies)
    })?;
    probe.map_err(|source| LabError::Spawn {
        cmd: format!("ARP probe in {ns}"),
        source,
    })
}
