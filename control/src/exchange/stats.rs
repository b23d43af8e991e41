//! The exchange's counters.

/// Counters of the exchange. All monotonic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExchangeStats {
    /// Datagrams handed to the driver for sending.
    pub datagrams_sent: u64,
    /// Bytes handed to the driver for sending.
    pub bytes_sent: u64,
    /// Datagrams received (before any check).
    pub datagrams_received: u64,
    /// Bytes received (before any check).
    pub bytes_received: u64,
    /// Datagrams that passed every check.
    pub datagrams_accepted: u64,
    /// Dropped: shorter than declared / than a header.
    pub truncated: u64,
    /// Dropped: wrong magic.
    pub bad_magic: u64,
    /// Dropped: unknown wire version.
    pub unknown_version: u64,
    /// Dropped: MAC did not verify (wrong key, spoofing, tampering).
    pub bad_mac: u64,
    /// Dropped: authenticated but structurally invalid.
    pub malformed: u64,
    /// Dropped: sequence replayed or outside the window.
    pub replayed: u64,
    /// Dropped: from an older boot epoch of the sender.
    pub stale_epoch: u64,
    /// Dropped: sender id equals ours.
    pub from_self: u64,
    /// Dropped: node table full.
    pub too_many_nodes: u64,
    /// Entries skipped: code not registered here.
    pub unknown_code: u64,
    /// Entries skipped: larger than the registration's max size.
    pub oversize_entries: u64,
    /// Entries skipped: membership payload unparseable.
    pub malformed_entries: u64,
    /// Entries skipped: not newer than what we hold.
    pub not_newer_entries: u64,
    /// Entries skipped: origin tombstoned (failed / left).
    pub tombstoned_entries: u64,
    /// Entries skipped: claim to originate from us.
    pub self_origin_entries: u64,
    /// Entries applied (newer versions stored).
    pub entries_applied: u64,
    /// Entries that did not fit in a datagram when they were due.
    pub entries_deferred: u64,
    /// Snapshot parts from a node we do not consider master.
    pub snapshot_rejected: u64,
    /// Snapshots completed and installed.
    pub snapshots_installed: u64,
    /// Datagrams that verified under the rotation key (the sender signs
    /// with the other key of a rotation), counted in `datagrams_accepted`
    /// too when they were accepted.
    pub rotation_key_verified: u64,
    /// Failure checks that kept a silent member suspect because this node
    /// was losing datagrams on receive (`loss_grace`).
    pub failures_held: u64,
}
