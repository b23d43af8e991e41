//! Placeholder replaced by the network types module.
use serde::Deserialize;
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct FlowRule {}
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct IpPrefix {}
