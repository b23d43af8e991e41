//! Lab topology for benchmarks: generator ns --veth-- DUT ns (two veths)
//! --veth-- sink ns, unique names (pid-based), torn down on drop.
//!
//! Addressing (RFC 2544 benchmark range): generator 198.18.0.1/24 (and the
//! source range above it), DUT in 198.18.0.254/24, DUT out 198.19.0.254/24,
//! sink 198.19.0.2/24. Neighbours are static, so no ARP is needed. The
//! command runner and the MAC lookup are the lab's (`headroom-lab`).

use std::{fs, path::Path};

/// CPU placement of the device under test and its veth NAPI processing
/// (perf/README.md compares the two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// DUT alone on core 1, DUT veth NAPI threaded and pinned to core 1.
    A,
    /// veth default: NAPI runs on the sender's core, DUT process on core 1.
    B,
}

/// Errors building the topology.
#[derive(Debug, thiserror::Error)]
pub enum TopoError {
    /// A command failed.
    #[error("`{cmd}` failed: {msg}")]
    Cmd {
        /// The command line.
        cmd: String,
        /// Its stderr or spawn error.
        msg: String,
    },
    /// A MAC address could not be read.
    #[error("reading MAC of {0}: {1}")]
    Mac(String, String),
}

/// Runs a command, failing with its stderr (the lab's runner).
pub fn sh(args: &[&str]) -> Result<String, TopoError> {
    headroom_lab::run(args)
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .map_err(|e| TopoError::Cmd {
            cmd: args.join(" "),
            msg: e.to_string(),
        })
}

/// Generator, DUT and sink namespaces joined by two veth pairs.
#[derive(Debug)]
pub struct Topology {
    /// Generator namespace.
    pub gen_ns: String,
    /// DUT namespace.
    pub dut_ns: String,
    /// Sink namespace.
    pub sink_ns: String,
    /// Generator's veth.
    pub gen_if: String,
    /// DUT veth facing the generator.
    pub dut_in: String,
    /// DUT veth facing the sink.
    pub dut_out: String,
    /// Sink's veth.
    pub sink_if: String,
    /// MAC of `gen_if`.
    pub gen_mac: [u8; 6],
    /// MAC of `dut_in`.
    pub dut_in_mac: [u8; 6],
    /// MAC of `dut_out`.
    pub dut_out_mac: [u8; 6],
    /// MAC of `sink_if`.
    pub sink_mac: [u8; 6],
    created: Vec<String>,
}

/// Generator address.
pub const GEN_IP: &str = "198.18.0.1";
/// Sink address.
pub const SINK_IP: &str = "198.19.0.2";

impl Topology {
    /// Creates namespaces and links named after `tag` (e.g. the pid).
    pub fn create(tag: &str) -> Result<Topology, TopoError> {
        let mut t = Topology {
            gen_ns: format!("hrg-{tag}"),
            dut_ns: format!("hrd-{tag}"),
            sink_ns: format!("hrs-{tag}"),
            gen_if: format!("hrg{tag}"),
            dut_in: format!("hrdi{tag}"),
            dut_out: format!("hrdo{tag}"),
            sink_if: format!("hrs{tag}"),
            gen_mac: [0; 6],
            dut_in_mac: [0; 6],
            dut_out_mac: [0; 6],
            sink_mac: [0; 6],
            created: Vec::new(),
        };
        for ns in [t.gen_ns.clone(), t.dut_ns.clone(), t.sink_ns.clone()] {
            sh(&["ip", "netns", "add", &ns])?;
            t.created.push(ns.clone());
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        }
        sh(&[
            "ip", "link", "add", &t.gen_if, "netns", &t.gen_ns, "type", "veth", "peer", "name",
            &t.dut_in, "netns", &t.dut_ns,
        ])?;
        sh(&[
            "ip", "link", "add", &t.dut_out, "netns", &t.dut_ns, "type", "veth", "peer", "name",
            &t.sink_if, "netns", &t.sink_ns,
        ])?;
        let links = [
            (t.gen_ns.clone(), t.gen_if.clone(), "198.18.0.1/24"),
            (t.dut_ns.clone(), t.dut_in.clone(), "198.18.0.254/24"),
            (t.dut_ns.clone(), t.dut_out.clone(), "198.19.0.254/24"),
            (t.sink_ns.clone(), t.sink_if.clone(), "198.19.0.2/24"),
        ];
        for (ns, dev, _) in &links {
            sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
        }
        t.gen_mac = t.mac(&t.gen_ns, &t.gen_if)?;
        t.dut_in_mac = t.mac(&t.dut_ns, &t.dut_in)?;
        t.dut_out_mac = t.mac(&t.dut_ns, &t.dut_out)?;
        t.sink_mac = t.mac(&t.sink_ns, &t.sink_if)?;
        Ok(t)
    }

    fn mac(&self, ns: &str, dev: &str) -> Result<[u8; 6], TopoError> {
        headroom_lab::mac_of(ns, dev).map_err(|e| TopoError::Mac(dev.to_owned(), e.to_string()))
    }

    /// Adds IPv4 addresses and static neighbours and enables forwarding in
    /// the DUT (kernel routing DUT).
    pub fn setup_routing(&self) -> Result<(), TopoError> {
        let m = crate::packet::fmt_mac;
        sh(&[
            "ip",
            "-n",
            &self.gen_ns,
            "addr",
            "add",
            "198.18.0.1/24",
            "dev",
            &self.gen_if,
        ])?;
        sh(&[
            "ip",
            "-n",
            &self.dut_ns,
            "addr",
            "add",
            "198.18.0.254/24",
            "dev",
            &self.dut_in,
        ])?;
        sh(&[
            "ip",
            "-n",
            &self.dut_ns,
            "addr",
            "add",
            "198.19.0.254/24",
            "dev",
            &self.dut_out,
        ])?;
        sh(&[
            "ip",
            "-n",
            &self.sink_ns,
            "addr",
            "add",
            "198.19.0.2/24",
            "dev",
            &self.sink_if,
        ])?;
        sh(&[
            "ip",
            "-n",
            &self.gen_ns,
            "route",
            "add",
            "198.19.0.0/24",
            "via",
            "198.18.0.254",
        ])?;
        sh(&[
            "ip",
            "-n",
            &self.sink_ns,
            "route",
            "add",
            "198.18.0.0/24",
            "via",
            "198.19.0.254",
        ])?;
        sh(&[
            "ip",
            "-n",
            &self.dut_ns,
            "neigh",
            "replace",
            SINK_IP,
            "lladdr",
            &m(&self.sink_mac),
            "dev",
            &self.dut_out,
            "nud",
            "permanent",
        ])?;
        sh(&[
            "ip",
            "-n",
            &self.dut_ns,
            "neigh",
            "replace",
            GEN_IP,
            "lladdr",
            &m(&self.gen_mac),
            "dev",
            &self.dut_in,
            "nud",
            "permanent",
        ])?;
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.dut_ns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])?;
        for k in ["all", "default", &self.dut_in, &self.dut_out] {
            let _ = sh(&[
                "ip",
                "netns",
                "exec",
                &self.dut_ns,
                "sysctl",
                "-qw",
                &format!("net.ipv4.conf.{k}.rp_filter=0"),
            ]);
        }
        Ok(())
    }

    /// Makes the DUT a Linux bridge of its two veths.
    pub fn setup_bridge(&self) -> Result<(), TopoError> {
        let br = "br0";
        sh(&[
            "ip",
            "-n",
            &self.dut_ns,
            "link",
            "add",
            br,
            "type",
            "bridge",
        ])?;
        sh(&[
            "ip",
            "-n",
            &self.dut_ns,
            "link",
            "set",
            &self.dut_in,
            "master",
            br,
        ])?;
        sh(&[
            "ip",
            "-n",
            &self.dut_ns,
            "link",
            "set",
            &self.dut_out,
            "master",
            br,
        ])?;
        sh(&["ip", "-n", &self.dut_ns, "link", "set", br, "up"])?;
        // the sink never transmits, so teach the bridge where it is
        let m = crate::packet::fmt_mac(&self.sink_mac);
        sh(&[
            "bridge",
            "-n",
            &self.dut_ns,
            "fdb",
            "replace",
            &m,
            "dev",
            &self.dut_out,
            "master",
            "static",
        ])?;
        Ok(())
    }

    /// Turns GRO on for `dev` in `ns` (creates the veth NAPI; lets a host
    /// stack receive generator frames without an XDP program).
    pub fn gro(&self, ns: &str, dev: &str, on: bool) -> Result<(), TopoError> {
        sh(&[
            "ip",
            "netns",
            "exec",
            ns,
            "ethtool",
            "-K",
            dev,
            "gro",
            if on { "on" } else { "off" },
        ])
        .map(|_| ())
    }

    /// Placement A for the DUT's veths: threaded NAPI pinned to `cpu`.
    /// Call after every XDP attach in the DUT (it recreates the NAPI thread).
    pub fn thread_and_pin_dut_napi(&self, cpu: usize) -> Result<Vec<i32>, TopoError> {
        for dev in [&self.dut_in, &self.dut_out] {
            let threaded = sh(&[
                "ip",
                "netns",
                "exec",
                &self.dut_ns,
                "cat",
                &format!("/sys/class/net/{dev}/threaded"),
            ])
            .unwrap_or_default();
            if threaded.trim() != "1" {
                // a NAPI must exist first (XDP program or GRO); GRO stays on for
                // devices without XDP, the generator's frames need it
                let xdp = sh(&["ip", "-n", &self.dut_ns, "link", "show", dev])
                    .unwrap_or_default()
                    .contains("xdp");
                if !xdp {
                    self.gro(&self.dut_ns, dev, true)?;
                }
                sh(&[
                    "ip",
                    "netns",
                    "exec",
                    &self.dut_ns,
                    "sh",
                    "-c",
                    &format!("echo 1 > /sys/class/net/{dev}/threaded"),
                ])?;
            }
        }
        let pids = napi_threads(&[&self.dut_in, &self.dut_out]);
        for p in &pids {
            sh(&["taskset", "-pc", &cpu.to_string(), &p.to_string()])?;
        }
        Ok(pids)
    }

    fn teardown(&mut self) {
        for ns in self.created.drain(..) {
            let _ = sh(&["ip", "netns", "del", &ns]);
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Kernel threads whose name starts with `napi/<dev>-`.
pub fn napi_threads(devs: &[&str]) -> Vec<i32> {
    kthreads(|c| devs.iter().any(|d| c.starts_with(&format!("napi/{d}-"))))
}

/// Kernel threads whose name matches.
pub fn kthreads(pred: impl Fn(&str) -> bool) -> Vec<i32> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if let Ok(c) = fs::read_to_string(format!("/proc/{pid}/comm")) {
                if pred(c.trim()) {
                    v.push(pid);
                }
            }
        }
    }
    v
}

/// Deletes benchmark namespaces (`hr[gds]-<pid>x<n>`) left behind by runs
/// whose process no longer exists (e.g. killed with SIGKILL). Returns them.
pub fn cleanup_stale() -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(list) = sh(&["ip", "netns", "list"]) else {
        return removed;
    };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name
            .strip_prefix("hrg-")
            .or_else(|| name.strip_prefix("hrd-"))
            .or_else(|| name.strip_prefix("hrs-"))
        else {
            continue;
        };
        let Some(pid) = rest.split('x').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid > 0
            && !Path::new(&format!("/proc/{pid}")).exists()
            && sh(&["ip", "netns", "del", name]).is_ok()
        {
            removed.push(name.to_owned());
        }
    }
    removed
}
