//! The workers' side of the XDP fast path: entries for decided flows.
//!
//! A worker that has classified a flow and found nothing it must do per
//! packet (no pacing, no director, no ARP, a complete checksum, a frame that
//! fits the egress) writes the flow's key and job into the receiving
//! interface's `flows` table; the XDP program then forwards the flow's next
//! frames itself and counts them per job. The worker writes again whenever a
//! frame of an eligible flow still reaches it (the entry was evicted from
//! the LRU table, or is from an older decision generation), so no
//! bookkeeping is needed on this side: the table is the state.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, OwnedFd},
};

use libbpf_rs::libbpf_sys;

use super::abi::{bytes_of, HrFlowEntry, HrFlowKey};

/// The decision generation fast-path entries carry: the rule set's and the
/// director tables' generations together, so a reload or a new VIP table
/// (membership, weights, health, ownership) makes every entry stale. The
/// workers stamp entries with it and the control thread writes it into the
/// XDP configuration; both call this one function.
pub fn generation(rules: u64, tables: u64) -> u32 {
    (rules as u32)
        .wrapping_mul(0x1_0000)
        .wrapping_add(tables as u32)
}

/// A worker's handle on one interface's fast-path flow table.
#[derive(Debug)]
pub struct FlowMap {
    fd: OwnedFd,
}

impl FlowMap {
    /// A handle on the map behind `fd` (duplicated: the worker owns its own).
    pub fn dup(fd: BorrowedFd<'_>) -> io::Result<Self> {
        Ok(Self {
            fd: fd.try_clone_to_owned()?,
        })
    }

    /// Another handle on the same map.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            fd: self.fd.try_clone()?,
        })
    }

    /// Writes (or replaces) the entry of `key`.
    pub fn install(&self, key: &HrFlowKey, entry: &HrFlowEntry) -> io::Result<()> {
        let (k, v) = (bytes_of(key), bytes_of(entry));
        // SAFETY: `k` and `v` are exactly the map's key and value size (the
        // ABI structs mirror the C types, checked against BTF) and live for
        // the call; the fd is a BPF map this handle owns.
        let rc = unsafe {
            libbpf_sys::bpf_map_update_elem(
                self.fd.as_raw_fd(),
                k.as_ptr().cast(),
                v.as_ptr().cast(),
                libbpf_sys::BPF_ANY as u64,
            )
        };
        if rc < 0 {
            return Err(io::Error::from_raw_os_error(-rc));
        }
        Ok(())
    }

    /// The entry of `key`, if any.
    pub fn get(&self, key: &HrFlowKey) -> Option<HrFlowEntry> {
        let mut e = HrFlowEntry::default();
        let k = bytes_of(key);
        // SAFETY: as in `install`; `e` is a valid, writable value of the
        // map's value size.
        let rc = unsafe {
            libbpf_sys::bpf_map_lookup_elem(
                self.fd.as_raw_fd(),
                k.as_ptr().cast(),
                (&mut e as *mut HrFlowEntry).cast(),
            )
        };
        (rc == 0).then_some(e)
    }

    /// Removes the entry of `key` (no error if absent).
    pub fn remove(&self, key: &HrFlowKey) {
        let k = bytes_of(key);
        // SAFETY: as in `install`.
        unsafe { libbpf_sys::bpf_map_delete_elem(self.fd.as_raw_fd(), k.as_ptr().cast()) };
    }

    /// The key after `prev` in the map's order (the first with `None`).
    fn next_key(&self, prev: Option<&HrFlowKey>) -> Option<HrFlowKey> {
        let mut next = HrFlowKey::default();
        let p = prev.map_or(std::ptr::null(), |k| bytes_of(k).as_ptr());
        // SAFETY: `p` is null or a key of the map's key size, `next` a
        // writable key of that size; both live for the call.
        let rc = unsafe {
            libbpf_sys::bpf_map_get_next_key(
                self.fd.as_raw_fd(),
                p.cast(),
                (&mut next as *mut HrFlowKey).cast(),
            )
        };
        (rc == 0).then_some(next)
    }

    /// Walks the table once: removes entries no frame has used for
    /// `idle_ns` (by the XDP program's last-seen stamp, in the kernel's
    /// monotonic clock: `now_ns` must be read from the same clock) and
    /// counts the rest. Entries the XDP program refreshes while the walk
    /// runs are not removed. A walk costs two system calls per entry: the
    /// control thread runs it at a low rate.
    pub fn sweep(&self, now_ns: u64, idle_ns: u64) -> Sweep {
        let mut out = Sweep::default();
        let mut prev: Option<HrFlowKey> = None;
        // The walk is bounded: a table that changes under it may repeat a
        // key, never loop forever, but keep a hard stop anyway.
        for _ in 0..(1 << 22) {
            let Some(k) = self.next_key(prev.as_ref()) else {
                break;
            };
            match self.get(&k) {
                Some(e) if now_ns.saturating_sub(e.last_seen_ns) >= idle_ns => {
                    // Delete after finding the next key would be cheaper,
                    // but deleting `k` first keeps the walk simple: the
                    // next call starts over from `prev`, which is still in.
                    self.remove(&k);
                    out.expired += 1;
                    continue;
                }
                Some(_) => out.entries += 1,
                None => {}
            }
            prev = Some(k);
        }
        out
    }
}

/// What a walk of a fast-path table found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Entries left in the table.
    pub entries: u64,
    /// Idle entries removed.
    pub expired: u64,
}

#[cfg(test)]
mod tests {
    //! The XDP program's fast path, run with BPF_PROG_TEST_RUN over frames
    //! built here, against the workers' own code for the same job (root only:
    //! the full test suite runs as root).

    use std::net::Ipv4Addr;

    use super::*;
    use crate::director::encap::{self, EncapConfig, OuterParams};
    use crate::frame::Frame;
    use crate::packet::{build, checksum, parse_frame, partial_checksum};
    use crate::xdp::abi::{HrEncap, HR_FP_DECAP, HR_FP_ENCAP, HR_FP_FORWARD};
    use crate::xdp::{XdpProgram, XdpSettings};

    const XDP_PASS: u32 = 2;
    const XDP_REDIRECT: u32 = 4;
    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);

    fn root() -> bool {
        let ok = nix::unistd::geteuid().is_root();
        if !ok {
            eprintln!("needs root: loads the XDP program");
        }
        ok
    }

    fn program(local: Option<Ipv4Addr>, host_mac: [u8; 6]) -> XdpProgram {
        let p = XdpProgram::load_with(1024).expect("load");
        p.configure(
            true,
            &XdpSettings {
                fast_path: true,
                complete_csum: true,
                egress_mtu: 1500,
                underlay_mtu: 1500,
                local_ip4: local,
                encap_port: encap::DEFAULT_PORT,
                host_mac,
                fp_gen: 7,
                ..XdpSettings::default()
            },
        )
        .unwrap();
        // The devmap's entries: any interface, so redirects are taken.
        p.set_egress(1, 1).unwrap();
        p
    }

    fn key_of(f: &[u8]) -> HrFlowKey {
        let info = parse_frame(f).unwrap();
        let k = info.flow.unwrap();
        let (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) = (k.src_ip(), k.dst_ip()) else {
            panic!("v4");
        };
        let mut key = HrFlowKey {
            sport: k.src_port().to_be(),
            dport: k.dst_port().to_be(),
            proto: k.protocol(),
            family: 4,
            vlan: info.vlan.unwrap_or(0),
            ..Default::default()
        };
        key.src[..4].copy_from_slice(&s.octets());
        key.dst[..4].copy_from_slice(&d.octets());
        key
    }

    /// `f` with its L4 checksum left partial, as an offloading stack sends it.
    fn partial(f: &[u8]) -> Vec<u8> {
        let mut p = f.to_vec();
        let info = parse_frame(f).unwrap();
        let l4 = info.l4_offset.unwrap() as usize;
        let at = if info.flow.unwrap().protocol() == 6 {
            16
        } else {
            6
        };
        let l3 = info.l3_offset as usize;
        let ps = checksum::fold(checksum::pseudo_header_v4(
            p[l3 + 12..l3 + 16].try_into().unwrap(),
            p[l3 + 16..l3 + 20].try_into().unwrap(),
            info.flow.unwrap().protocol(),
            (info.l3_len as usize - (l4 - l3)) as u16,
        ));
        p[l4 + at..l4 + at + 2].copy_from_slice(&ps.to_be_bytes());
        assert!(partial_checksum::is_partial(&p, &info));
        p
    }

    #[test]
    fn decided_flows_are_forwarded_and_partial_checksums_completed() {
        if !root() {
            return;
        }
        let p = program(None, [0; 6]);
        let map = p.flow_map().unwrap();
        for good in [
            build::tcp4(CLIENT, 40000, VIP, 80, 0x18, &[3u8; 1400]),
            build::udp4(CLIENT, 40000, VIP, 53, &[5u8; 333]),
            build::udp4(CLIENT, 40001, VIP, 53, &[5u8; 7]),
        ] {
            // No entry yet: the workers get it.
            assert_eq!(p.test_run(&good).unwrap().0, XDP_PASS);
            let e = HrFlowEntry {
                gen: 7,
                job: 3,
                action: HR_FP_FORWARD,
                ..Default::default()
            };
            map.install(&key_of(&good), &e).unwrap();
            let (rc, out) = p.test_run(&partial(&good)).unwrap();
            assert_eq!(rc, XDP_REDIRECT);
            assert_eq!(
                out, good,
                "forwarded unchanged but for the completed checksum"
            );
            // A stale generation goes to the workers.
            map.install(&key_of(&good), &HrFlowEntry { gen: 6, ..e })
                .unwrap();
            assert_eq!(p.test_run(&good).unwrap().0, XDP_PASS);
        }
        assert!(p.fast_job(3).unwrap().packets >= 3);
        assert!(p.fast_checksums_completed().unwrap().packets >= 3);
    }

    #[test]
    fn a_sweep_removes_idle_entries_and_counts_the_rest() {
        if !root() {
            return;
        }
        let p = program(None, [0; 6]);
        let map = p.flow_map().unwrap();
        let now = headroom_clock::Timestamp::now().as_nanos();
        let idle_ns = 60_000_000_000;
        let frames: Vec<Vec<u8>> = (0..50u16)
            .map(|i| build::udp4(CLIENT, 20000 + i, VIP, 53, &[1u8; 64]))
            .collect();
        for (i, f) in frames.iter().enumerate() {
            let e = HrFlowEntry {
                gen: 7,
                job: 1,
                action: HR_FP_FORWARD,
                // Even flows were last used two minutes ago.
                last_seen_ns: if i % 2 == 0 { now - 2 * idle_ns } else { now },
                ..Default::default()
            };
            map.install(&key_of(f), &e).unwrap();
        }
        // An idle flow whose frame arrives now is refreshed by the XDP
        // program and survives the sweep.
        assert_eq!(p.test_run(&frames[0]).unwrap().0, XDP_REDIRECT);
        assert!(map.get(&key_of(&frames[0])).unwrap().last_seen_ns >= now);
        let sweep = map.sweep(headroom_clock::Timestamp::now().as_nanos(), idle_ns);
        assert_eq!(
            sweep,
            Sweep {
                entries: 26,
                expired: 24
            }
        );
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(
                map.get(&key_of(f)).is_some(),
                i == 0 || i % 2 == 1,
                "flow {i}"
            );
        }
        assert_eq!(
            map.sweep(now, idle_ns),
            Sweep {
                entries: 26,
                expired: 0
            }
        );
    }

    #[test]
    fn vip_flows_are_encapsulated_and_decapsulated_like_the_workers_do() {
        if !root() {
            return;
        }
        let owner = program(None, [0; 6]);
        let outer = OuterParams {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(172, 16, 0, 1),
            dst_ip: Ipv4Addr::new(172, 16, 0, 2),
            origin: 1,
            service: 4,
            src_port: 51234,
        };
        let cfg = EncapConfig::default();
        let fast = HrEncap {
            dst_mac: outer.dst_mac,
            src_mac: outer.src_mac,
            src_ip: u32::from_ne_bytes(outer.src_ip.octets()),
            dst_ip: u32::from_ne_bytes(outer.dst_ip.octets()),
            sport: outer.src_port.to_be(),
            dport: cfg.udp_port.to_be(),
            service: outer.service.to_be(),
            _pad: 0,
            origin: outer.origin.to_be(),
        };
        for client in [
            build::tcp4(CLIENT, 40000, VIP, 80, 0x10, &[9u8; 1000]),
            build::ipv4_frame(Some(12), 6, CLIENT, VIP, 40001, 80, 0x10, &[1u8; 200]),
            build::tcp4(CLIENT, 40002, VIP, 80, 0x10, &[]),
        ] {
            owner
                .flow_map()
                .unwrap()
                .install(
                    &key_of(&client),
                    &HrFlowEntry {
                        gen: 7,
                        job: 0,
                        action: HR_FP_ENCAP,
                        encap: fast,
                        ..Default::default()
                    },
                )
                .unwrap();
            let (rc, wire) = owner.test_run(&partial(&client)).unwrap();
            assert_eq!(rc, XDP_REDIRECT, "back out of the interface it came in by");
            // The worker's encapsulation of the same (complete) frame.
            let mut buf = vec![0u8; 4096];
            buf[256..256 + client.len()].copy_from_slice(&client);
            let mut fr = Frame::single(&mut buf, 256, client.len()).unwrap();
            let info = parse_frame(fr.data()).unwrap();
            encap::encapsulate(&mut fr, &info, &outer, &cfg).unwrap();
            assert_eq!(wire, fr.data(), "same bytes on the wire as the slow path");

            // The serving node strips it for its host.
            let server = program(Some(outer.dst_ip), [0xaa; 6]);
            server.set_peers(&[outer.src_ip, outer.dst_ip]).unwrap();
            // No entry for the inner flow yet: the workers decide.
            assert_eq!(server.test_run(&wire).unwrap().0, XDP_PASS);
            server
                .flow_map()
                .unwrap()
                .install(
                    &key_of(&client),
                    &HrFlowEntry {
                        gen: 7,
                        job: 5,
                        action: HR_FP_DECAP,
                        ..Default::default()
                    },
                )
                .unwrap();
            let (rc, host) = server.test_run(&wire).unwrap();
            assert_eq!(rc, XDP_REDIRECT);
            let d = encap::decapsulate(&fr, &parse_frame(fr.data()).unwrap(), &cfg).unwrap();
            encap::restore_ethernet(&mut fr, &d, [0xaa; 6], outer.src_mac).unwrap();
            assert_eq!(host, fr.data(), "same frame for the host as the slow path");
            assert_eq!(server.fast_job(5).unwrap().packets, 1);
            // From an address outside the pool: the workers refuse it.
            server.set_peers(&[outer.dst_ip]).unwrap();
            assert_eq!(server.test_run(&wire).unwrap().0, XDP_PASS);
        }
    }
}
