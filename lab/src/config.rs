//! The one server configuration the tests, examples, benchmarks and the
//! demo start headroomd with: a lab server's identity, interfaces, small
//! rings and fast timers, into which each caller merges its own TOML
//! (jobs, pipes, the pool, VIPs).

use std::path::Path;

use toml_edit::{DocumentMut, Item, Table};

use crate::topology::Server;

/// A headroomd configuration for one lab server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    doc: DocumentMut,
}

/// The base every lab server starts from.
const BASE: &str = r#"
[node]
[interfaces]
[workers]
cores = [1]
frame_count = 4096
fill_size = 1024
ring_size = 1024
[control]
high_freq_interval = "20ms"
low_freq_interval = "500ms"
[deploy]
"#;

impl ServerConfig {
    /// Server `s` with its control socket at `socket`.
    pub fn new(s: &Server, socket: &Path) -> Self {
        let mut doc: DocumentMut = BASE.parse().expect("the base configuration parses");
        doc["node"]["id"] = toml_edit::value(i64::from(s.id));
        doc["node"]["address"] = toml_edit::value(s.node_ip.to_string());
        doc["interfaces"]["outer"] = toml_edit::value(s.nic.as_str());
        doc["interfaces"]["inner"] = toml_edit::value(s.inner.as_str());
        doc["control"]["socket"] = toml_edit::value(socket.display().to_string());
        // State (the persisted pool policy, CPU records) next to the socket:
        // per server and per test, never the machine's /var/lib/headroom.
        let state = socket
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!("state-s{}", s.id));
        doc["cpu"] = toml_edit::table();
        doc["cpu"]["state_dir"] = toml_edit::value(state.display().to_string());
        doc["deploy"]["host"] = toml_edit::value(s.host_if.as_str());
        doc["deploy"]["bridge"] = toml_edit::value(s.bridge.as_str());
        Self { doc }
    }

    /// Joins the pool of `servers` (every other one is a peer) with the key
    /// in `key_file`.
    pub fn pool(mut self, me: &Server, servers: &[Server], key_file: &Path) -> Self {
        let mut peers = toml_edit::Array::new();
        for p in servers.iter().filter(|p| p.id != me.id) {
            peers.push(format!("{}@{}:7946", p.id, p.node_ip));
        }
        if !self.doc.contains_table("exchange") {
            self.doc["exchange"] = toml_edit::table();
        }
        self.doc["exchange"]["peers"] = toml_edit::value(peers);
        self.doc["exchange"]["key_file"] = toml_edit::value(key_file.display().to_string());
        self
    }

    /// Names every server's host address for the flow director
    /// (`[[director.hosts]]`), which VIP services need.
    pub fn director_hosts(self, servers: &[Server]) -> Result<Self, toml_edit::TomlError> {
        let hosts: String = servers
            .iter()
            .map(|s| {
                format!(
                    "[[director.hosts]]\nnode = {}\naddress = \"{}\"\n",
                    s.id, s.host_ip
                )
            })
            .collect();
        self.merge(&format!("[director]\n{hosts}"))
    }

    /// Merges `toml` in: its tables extend (and its keys override) the
    /// configuration's, its arrays of tables (`[[job]]`, `[[vip]]`) are
    /// appended.
    pub fn merge(mut self, toml: &str) -> Result<Self, toml_edit::TomlError> {
        let extra: DocumentMut = toml.parse()?;
        merge_table(self.doc.as_table_mut(), extra.as_table());
        // Tables render in the order of their positions, which the merged
        // ones bring from their own document: renumbered in the logical
        // order, a `[[job.flow]]` stays under its own `[[job]]` however
        // many merges brought jobs.
        let mut next = 0;
        renumber(self.doc.as_table_mut(), &mut next);
        Ok(self)
    }

    /// The TOML text.
    pub fn render(&self) -> String {
        self.doc.to_string()
    }
}

/// Gives `t`'s sub-tables (depth first, in key order) positions from `next` on.
fn renumber(t: &mut Table, next: &mut usize) {
    for (_, item) in t.iter_mut() {
        match item {
            Item::Table(sub) => {
                sub.set_position(*next);
                *next += 1;
                renumber(sub, next);
            }
            Item::ArrayOfTables(a) => {
                for sub in a.iter_mut() {
                    sub.set_position(*next);
                    *next += 1;
                    renumber(sub, next);
                }
            }
            _ => {}
        }
    }
}

fn merge_table(into: &mut Table, from: &Table) {
    for (k, v) in from.iter() {
        match (into.get_mut(k), v) {
            (Some(Item::Table(a)), Item::Table(b)) => merge_table(a, b),
            (Some(Item::ArrayOfTables(a)), Item::ArrayOfTables(b)) => {
                for t in b.iter() {
                    a.push(t.clone());
                }
            }
            (_, v) => {
                into.insert(k, v.clone());
            }
        }
    }
}

/// The lab's saturated-pipe policy: the 20 Mbit/s pipe `uplink` towards
/// the clients, shared by job `gold` (UDP from port 7001) booking `gold`
/// percent and `bronze` (7002) the rest.
pub fn gold_bronze_policy(gold: u8) -> String {
    let bronze = 100 - u32::from(gold.min(100));
    format!(
        r#"
[[pipe]]
name = "uplink"
capacity = "20Mbit"
remote = "10.200.2.0/24"

[[job]]
name = "gold"
[[job.flow]]
protocol = "udp"
local_port = "7001"
[[job.booking]]
pipe = "uplink"
rate = "{gold}%"

[[job]]
name = "bronze"
[[job.flow]]
protocol = "udp"
local_port = "7002"
[[job.booking]]
pipe = "uplink"
rate = "{bronze}%"
"#
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn server(id: u16) -> Server {
        Server {
            id,
            ns: format!("t-s{id}"),
            host_ns: format!("t-s{id}"),
            node_ip: crate::topology::server_ip(id),
            host_ip: crate::topology::server_ip(id),
            nic: "eth0".into(),
            inner: "inner".into(),
            host_if: "hr-host".into(),
            bridge: "hr-bridge".into(),
        }
    }

    #[test]
    fn renders_a_configuration_headroomd_accepts_with_merged_extras() {
        let (a, b) = (server(1), server(2));
        let text = ServerConfig::new(&a, Path::new("/tmp/s1.sock"))
            .pool(&a, &[a.clone(), b.clone()], Path::new("/tmp/key"))
            .merge(
                "[exchange]\nfailure_timeout = \"600ms\"\n[control]\nhigh_freq_interval = \"10ms\"\n\
                 [[job]]\nname = \"web\"\n[[job]]\nname = \"bulk\"\n",
            )
            .unwrap()
            .render();
        let cfg = headroom_config::Config::parse(&text, Path::new("lab.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(cfg.node.id, 1);
        assert_eq!(cfg.interfaces.outer, "eth0");
        assert_eq!(
            cfg.exchange.peers.len(),
            1,
            "only the other server is a peer"
        );
        assert_eq!(cfg.exchange.failure_timeout, Duration::from_millis(600));
        assert_eq!(cfg.control.high_freq_interval, Duration::from_millis(10));
        assert_eq!(cfg.control.low_freq_interval, Duration::from_millis(500));
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        assert_eq!(cfg.jobs.len(), 2);
        assert_eq!(cfg.deploy.host, "hr-host");
        assert!(ServerConfig::new(&a, Path::new("/x"))
            .merge("[node\n")
            .is_err());
    }

    #[test]
    fn jobs_of_several_merges_keep_their_own_flows() {
        let a = server(1);
        let text = ServerConfig::new(&a, Path::new("/tmp/s1.sock"))
            .merge(
                "[[job]]\nname = \"a\"\n[[job.flow]]\nlocal_port = \"1\"\n\
                 [[job]]\nname = \"b\"\n[[job.flow]]\nlocal_port = \"2\"\n",
            )
            .unwrap()
            .merge("[workers]\nfast_path = \"off\"\n")
            .unwrap()
            .merge("[[job]]\nname = \"p\"\n[[job.flow]]\nlocal_port = \"9\"\n")
            .unwrap()
            .render();
        let cfg = headroom_config::Config::parse(&text, Path::new("lab.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let flows: Vec<(String, usize)> = cfg
            .jobs
            .iter()
            .map(|j| (j.name.clone(), j.flow_rules.len()))
            .collect();
        assert_eq!(
            flows,
            [("a".into(), 1), ("b".into(), 1), ("p".into(), 1)],
            "{text}"
        );
        for (job, port) in [(0, "1"), (1, "2"), (2, "9")] {
            assert!(
                format!("{:?}", cfg.jobs[job].flow_rules[0]).contains(port),
                "{text}"
            );
        }
        assert_eq!(cfg.workers.fast_path, headroom_config::FastPath::Off);
    }

    #[test]
    fn the_demo_policy_makes_a_valid_configuration() {
        let (a, b) = (server(1), server(2));
        let text = ServerConfig::new(&b, Path::new("/tmp/x.sock"))
            .pool(&b, &[a, b.clone()], Path::new("/tmp/pool.key"))
            .merge(include_str!("../../config/demo.toml"))
            .and_then(|c| c.director_hosts(&[server(1), server(2)]))
            .unwrap()
            .render();
        let cfg = headroom_config::Config::parse(&text, Path::new("lab.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(cfg.job_names(), vec!["default", "web", "bulk", "export"]);
        assert_eq!(cfg.pipes.len(), 1);
    }
}
