//! `[deploy]`: how the host stack is put behind headroomd on a real server
//! (`headroomctl attach`, or headroomd itself at start).

use serde::Deserialize;

/// `[deploy]`
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DeployConfig {
    /// headroomd attaches at start (like `headroomctl attach`).
    pub attach_on_start: bool,
    /// With `attach_on_start`: headroomd detaches again on a clean stop.
    pub detach_on_stop: bool,
    /// The host's end of the veth pair (carries the host's addresses).
    pub host: String,
    /// The fail-open bridge joining the NIC and the inner interface.
    pub bridge: String,
    /// MTU of the NIC, veth pair and bridge (default: the NIC's).
    pub mtu: Option<u32>,
    /// Queues of the veth pair (default: as many as the NIC uses).
    pub inner_queues: Option<u32>,
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            attach_on_start: false,
            detach_on_stop: true,
            host: "hr-host".into(),
            bridge: "hr-bridge".into(),
            mtu: None,
            inner_queues: None,
        }
    }
}

impl DeployConfig {
    /// Checks names and sizes against the interfaces headroomd sits between:
    /// (field, message) of the first problem.
    pub fn validate(&self, outer: &str, inner: &str) -> Result<(), (&'static str, String)> {
        for (field, name) in [("host", &self.host), ("bridge", &self.bridge)] {
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', ':']) {
                return Err((field, "must be an interface name (1-15 chars)".into()));
            }
            if name == outer || name == inner {
                return Err((
                    field,
                    format!("{name:?} is already interfaces.outer or interfaces.inner"),
                ));
            }
        }
        if self.host == self.bridge {
            return Err(("bridge", "must differ from deploy.host".into()));
        }
        if let Some(m) = self.mtu {
            if !(1280..=65535).contains(&m) {
                return Err(("mtu", format!("{m} is not an MTU (1280..=65535 bytes)")));
            }
        }
        if let Some(q) = self.inner_queues {
            if !(1..=64).contains(&q) {
                return Err(("inner_queues", format!("{q} is not 1..=64")));
            }
        }
        Ok(())
    }
}
