//! The metrics endpoint's view of the status model and of the process
//! scheduler: every counter of [`Status`] and [`ProcSchedSnapshot`] as a
//! Prometheus metric (rendered once a second; the endpoint itself is
//! `metrics-exporter-prometheus`).
//!
//! [`FAMILIES`] is the catalogue: every family's name, type, unit, labels
//! and help text. [`describe`] gives the exporter the help texts, the tests
//! check that every family published is in the catalogue and named by the
//! Prometheus conventions (base units in the name, `_total` on counters and
//! only there), and the operator guide's metric list is
//! [`reference_table`], checked against the catalogue so it cannot drift.

use headroom_agent::status::{DirectorStatus, Status};
use headroom_control::procsched::ProcSchedSnapshot;

/// Counter or gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (from the start of headroomd).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// What a family's values measure; the name ends in the unit's suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A number of things (packets, processes, events): named after them.
    Count,
    /// Bytes: `_bytes`.
    Bytes,
    /// Bytes per second: `_bytes_per_second`.
    BytesPerSecond,
    /// Seconds: `_seconds`.
    Seconds,
    /// A fraction, 0 to 1: `_ratio`.
    Ratio,
    /// CPU cores (CPU seconds per second): `_cores`.
    Cores,
    /// Constant 1, the information in the labels: `_info`.
    Info,
}

impl Unit {
    /// The suffix the name carries (before `_total`), if any.
    pub fn suffix(self) -> Option<&'static str> {
        match self {
            Unit::Count => None,
            Unit::Bytes => Some("_bytes"),
            Unit::BytesPerSecond => Some("_bytes_per_second"),
            Unit::Seconds => Some("_seconds"),
            Unit::Ratio => Some("_ratio"),
            Unit::Cores => Some("_cores"),
            Unit::Info => Some("_info"),
        }
    }

    fn metrics_unit(self) -> Option<metrics::Unit> {
        match self {
            Unit::Count => Some(metrics::Unit::Count),
            Unit::Bytes => Some(metrics::Unit::Bytes),
            Unit::Seconds => Some(metrics::Unit::Seconds),
            // No such unit in the facade (its Percent means 0 to 100).
            Unit::BytesPerSecond | Unit::Ratio | Unit::Cores | Unit::Info => None,
        }
    }
}

/// One metric family.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// Its name.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// What it measures.
    pub unit: Unit,
    /// Its labels.
    pub labels: &'static [&'static str],
    /// The HELP text.
    pub help: &'static str,
}

const fn counter(
    name: &'static str,
    unit: Unit,
    labels: &'static [&'static str],
    help: &'static str,
) -> Family {
    Family {
        name,
        kind: Kind::Counter,
        unit,
        labels,
        help,
    }
}

const fn gauge(
    name: &'static str,
    unit: Unit,
    labels: &'static [&'static str],
    help: &'static str,
) -> Family {
    Family {
        name,
        kind: Kind::Gauge,
        unit,
        labels,
        help,
    }
}

use Unit::*;

/// Every family headroomd publishes, in the order of the operator guide.
pub const FAMILIES: &[Family] = &[
    gauge("headroom_build_info", Info, &["version", "commit"], "Always 1: the version and source commit of the running headroomd."),
    gauge("headroom_uptime_seconds", Seconds, &[], "Time since headroomd started."),
    gauge("headroom_interface_rx_queues", Count, &["interface"], "Receive queues the interface has now (compare with the queues served at start)."),
    counter("headroom_xdp_verdict_packets_total", Count, &["interface", "verdict"], "Frames the XDP program handled on the interface, by verdict."),
    counter("headroom_xdp_verdict_bytes_total", Bytes, &["interface", "verdict"], "Bytes of the frames the XDP program handled on the interface, by verdict."),
    counter("headroom_fast_path_misses_total", Count, &["interface", "reason"], "Managed frames the XDP fast path sent to the workers instead, by reason."),
    counter("headroom_fast_path_checksums_completed_total", Count, &["interface"], "Partial checksums the XDP fast path completed on frames received on the interface."),
    counter("headroom_fast_path_encapsulated_packets_total", Count, &["interface"], "VIP frames the XDP fast path encapsulated towards their serving node."),
    counter("headroom_fast_path_decapsulated_packets_total", Count, &["interface"], "Encapsulated frames the XDP fast path decapsulated for the host."),
    counter("headroom_fast_path_disabled_total", Count, &["interface"], "Times the XDP fast path turned itself off after redirect failures towards the interface."),
    gauge("headroom_fast_path_flows", Count, &["interface"], "Flows in the interface's fast-path table at the last sweep."),
    gauge("headroom_fast_path_flows_capacity", Count, &["interface"], "Size of the interface's fast-path table ([workers] fast_path_flows)."),
    counter("headroom_fast_path_expired_total", Count, &["interface"], "Fast-path entries removed for being idle longer than the classifier's idle timeout."),
    counter("headroom_worker_rx_packets_total", Count, &["worker", "side"], "Frames the worker received, by side (outer, inner)."),
    counter("headroom_worker_rx_bytes_total", Bytes, &["worker", "side"], "Bytes the worker received, by side."),
    counter("headroom_worker_tx_packets_total", Count, &["worker", "side"], "Frames the worker transmitted, by side."),
    counter("headroom_worker_tx_bytes_total", Bytes, &["worker", "side"], "Bytes the worker transmitted, by side."),
    counter("headroom_worker_rx_multi_buffer_packets_total", Count, &["worker", "side"], "Multi-buffer packets (jumbo frames, aggregates) the worker received, by side."),
    counter("headroom_worker_checksums_completed_total", Count, &["worker", "side"], "Partial TCP/UDP checksums the worker completed, by receiving side."),
    counter("headroom_worker_aggregates_segmented_total", Count, &["worker"], "Aggregated packets the worker cut into segments."),
    counter("headroom_worker_segments_total", Count, &["worker"], "Segments the worker made of aggregated packets."),
    counter("headroom_worker_parse_errors_total", Count, &["worker"], "Frames the parser rejected (forwarded anyway, counted in the default job)."),
    counter("headroom_worker_fast_path_installs_total", Count, &["worker", "result"], "Fast-path entries the worker wrote (written) or the kernel refused (refused)."),
    counter("headroom_worker_drops_total", Count, &["worker", "reason"], "Frames the worker dropped, by reason."),
    counter("headroom_xsk_socket_total", Count, &["worker", "side", "stat"], "The kernel's AF_XDP socket statistics, by worker, side and statistic (frames)."),
    gauge("headroom_worker_frames_accounted", Count, &["worker"], "UMEM frames the worker accounts for (all of them unless frames leak)."),
    counter("headroom_worker_frame_violations_total", Count, &["worker"], "UMEM frame accounting violations the worker detected."),
    counter("headroom_job_packets_total", Count, &["job", "direction"], "Frames of the job's flows, by direction (in, out)."),
    counter("headroom_job_bytes_total", Bytes, &["job", "direction"], "Bytes of the job's flows, by direction."),
    gauge("headroom_flows", Count, &[], "Flows in the workers' flow tables."),
    gauge("headroom_resident_memory_bytes", Bytes, &[], "headroomd's resident memory (includes the UMEM frames the kernel touched)."),
    gauge("headroom_sqlite_memory_bytes", Bytes, &[], "Memory SQLite holds for the history store (bounded by its page cache)."),
    counter("headroom_job_requests_total", Count, &["job", "result"], "Requests (TCP direction turns) of a job with a goal, by result (answered, unanswered), measured passively by the workers."),
    gauge("headroom_job_response_seconds", Seconds, &["job", "quantile"], "A job's response time since start (request in to reply out), at the quantile (0.5, 0.9, 0.99)."),
    gauge("headroom_job_goal_index", Count, &["job"], "How far a job is from its response-time goal: 1 exactly met, above 1 missed."),
    counter("headroom_response_tracker_total", Count, &["counter"], "The response-time trackers' counters (all workers): table_full, replies_unseen, expired, syn_retransmits, retransmits, untracked_segments."),
    counter("headroom_reloads_total", Count, &["result"], "Configuration reloads, by result (ok, rejected)."),
    gauge("headroom_pipe_capacity_bytes_per_second", BytesPerSecond, &["pipe"], "The pipe's capacity, shared by the servers of the pool."),
    gauge("headroom_pipe_node_credit_bytes", Bytes, &["pipe"], "This server's credit on the pipe per high-frequency interval."),
    gauge("headroom_pipe_immediate_bytes", Bytes, &["pipe"], "This server's immediate (spare) credit on the pipe per high-frequency interval."),
    gauge("headroom_pipe_nodes", Count, &["pipe"], "Live servers in the pipe's allocation."),
    counter("headroom_pipe_job_bytes_total", Bytes, &["pipe", "job", "kind"], "A job's bytes on the pipe on this server since start, by kind: demand (offered to the pacer), granted (credit; in monitor-only mode what the policy would grant), sent, dropped."),
    gauge("headroom_enforcement", Count, &[], "1 while the pool policy is enforced ([pool] enforcement = \"on\"), 0 in monitor-only mode (nothing paced, no CPU shares set)."),
    gauge("headroom_history_writing", Count, &[], "1 while the history store is being written, 0 while it fails (the reason is in `headroomctl status`) or is starting."),
    counter("headroom_history_faults_total", Count, &["fault"], "History store failures, by kind (disk_full, read_only, locked, corrupt, too_new, io)."),
    counter("headroom_history_dropped_total", Count, &["what"], "History data dropped: samples, summaries or journal entries for a full writer queue; points or journal entries for a full backlog while the store failed."),
    gauge("headroom_history_backlog_points", Count, &[], "History points held in memory waiting for the store."),
    counter("headroom_history_journal_written_total", Count, &[], "Trigger journal entries stored in the history (what `headroomctl events` reads)."),
    counter("headroom_history_recoveries_total", Count, &[], "Times writing the history store resumed after a failure."),
    gauge("headroom_trigger_state", Count, &["trigger", "state"], "1 for a trigger's current state (idle, pending, waiting, firing), 0 for the others; the master's view, a standby shows its latest record's."),
    counter("headroom_trigger_episodes_total", Count, &["trigger"], "Episodes a trigger fired, pool-wide (continued across masters)."),
    gauge("headroom_trigger_last_fired_seconds", Seconds, &["trigger"], "Seconds since a trigger last fired (absent if it never did)."),
    gauge("headroom_automation_evaluating", Count, &[], "1 on the server that evaluates the pool's triggers and schedules (the master), 0 elsewhere."),
    gauge("headroom_automation_overlay_info", Info, &["variant", "node_failure"], "The overlay in force on this server: the active policy variant (base when none) and whether the jobs' failure policies apply."),
    counter("headroom_automation_total", Count, &["counter"], "Automation counters: evaluations, fired, resolved, suppressed, actions_released, actions_dropped, actions_ok, actions_failed, commit_timeouts, episodes_continued, events_dropped, takeovers, records_published, records_received, records_malformed, records_split, records_too_large, records_stale, records_not_master, acks_malformed, overlay_changes."),
    counter("headroom_console_logins_total", Count, &["result"], "Web console logins, by result: ok, failed (wrong user or password), limited (too many failures from the address)."),
    counter("headroom_console_refused_total", Count, &["reason"], "Web console requests refused, by reason: unauthenticated, forbidden (a viewer asking for an admin action), csrf (missing or wrong token), origin (a login from another site)."),
    counter("headroom_console_requests_total", Count, &["status"], "Web console requests answered, by status class (2xx, 3xx, 4xx, 5xx)."),
    gauge("headroom_console_sessions", Count, &[], "Web console sessions logged in and not expired."),
    counter("headroom_bandwidth_entries_rejected_total", Count, &[], "Peers' pipe entries rejected (undecodable or for an unknown pipe)."),
    counter("headroom_exchange_datagrams_total", Count, &["kind"], "Exchange datagrams: sent, received, accepted, dropped by cause (bad_mac, replayed, malformed), and verified under the rotation key (rotation_key)."),
    counter("headroom_exchange_sent_bytes_total", Bytes, &[], "Bytes of the exchange datagrams sent."),
    counter("headroom_membership_events_total", Count, &[], "Membership changes seen by the exchange (joins, failures, leaves)."),
    counter("headroom_membership_failures_total", Count, &[], "Members this node declared failed."),
    counter("headroom_membership_failures_held_total", Count, &[], "Failure checks that kept a silent member suspect because this node was losing datagrams on receive."),
    counter("headroom_exchange_prefilter_rejected_total", Count, &["reason"], "Exchange datagrams the receive thread rejected before the MAC, by reason (length, oversize, header, join_limited, join_total_limited, member_limited)."),
    counter("headroom_exchange_prefilter_passed_total", Count, &[], "Exchange datagrams the receive pre-filter passed on to the MAC check."),
    gauge("headroom_policy_version", Count, &["node"], "Pool policy version each live node runs, as this node sees it (0: none; the node's own under its id)."),
    gauge("headroom_policy_enforcing", Count, &[], "1 once this node runs the pool's current policy version (it grants bandwidth and sets CPU shares only then), else 0."),
    counter("headroom_policy_events_total", Count, &["event"], "Pool policy events and drops: activations, versions refused here (versions_rejected, activation_failed), published, lost in a partition merge, and messages dropped by cause (malformed, unexpected, corrupt, ...)."),
    counter("headroom_exchange_kernel_drops_total", Count, &[], "Exchange datagrams the kernel dropped for a full socket receive buffer (SO_RXQ_OVFL)."),
    counter("headroom_exchange_queue_full_total", Count, &[], "Exchange datagrams dropped because the queue to the control thread was full."),
    gauge("headroom_pool_live_nodes", Count, &[], "Servers of the pool this one sees alive, itself included."),
    counter("headroom_vip_packets_total", Count, &["vip"], "Frames of the VIP service this node placed as owner."),
    counter("headroom_vip_bytes_total", Bytes, &["vip"], "Bytes of the VIP service this node placed as owner."),
    counter("headroom_vip_new_flows_total", Count, &["vip"], "New flows of the VIP service this node placed as owner."),
    counter("headroom_vip_sticky_hits_total", Count, &["vip"], "New flows of the VIP service placed by stickiness."),
    counter("headroom_vip_encapsulated_packets_total", Count, &["vip"], "Frames of the VIP service this node encapsulated to another member."),
    gauge("headroom_vip_owner", Count, &["vip"], "Node id of the VIP service's owner (0: none)."),
    counter("headroom_vip_placements_total", Count, &["vip", "node"], "New flows of the VIP service placed on each member."),
    counter("headroom_director_total", Count, &["counter"], "Flow director events, by counter (no_backend, encap_too_big, decap_errors, ...)."),
    gauge("headroom_procsched_job_processes", Count, &["job"], "Processes of the job on this server."),
    gauge("headroom_procsched_job_cpu_cores", Cores, &["job"], "CPU the job used over the last tick."),
    gauge("headroom_procsched_job_cpu_target_ratio", Ratio, &["job"], "The job's CPU entitlement on this server, as a fraction of the server's cores."),
    gauge("headroom_procsched_job_rss_bytes", Bytes, &["job"], "Resident memory of the job's processes."),
    gauge("headroom_procsched_unmanaged_processes", Count, &[], "User processes no job claims."),
    gauge("headroom_procsched_insufficient_resources", Count, &[], "1 while the CPU bookings exceed what the pool has, else 0."),
    counter("headroom_procsched_ticks_total", Count, &[], "Process scheduler ticks."),
    counter("headroom_procsched_new_processes_total", Count, &[], "Processes the scanner found."),
    counter("headroom_procsched_exited_processes_total", Count, &[], "Processes the scanner saw exit."),
    counter("headroom_procsched_scan_races_total", Count, &[], "Processes that exited while being scanned."),
    counter("headroom_procsched_scan_parse_errors_total", Count, &[], "/proc entries that could not be parsed."),
    counter("headroom_procsched_moves_total", Count, &[], "Processes moved into a job's cgroup (or re-prioritised)."),
    counter("headroom_procsched_releases_total", Count, &[], "Processes returned to their original cgroup."),
    counter("headroom_procsched_recovered_processes_total", Count, &[], "Processes found in the job cgroups of a headroomd that did not shut down, and left there."),
    counter("headroom_procsched_strays_released_total", Count, &[], "Processes forked inside a job's cgroup without belonging to it, released."),
    counter("headroom_procsched_move_races_total", Count, &[], "Processes that exited while being moved or released."),
    counter("headroom_procsched_backend_errors_total", Count, &[], "Writes to cgroups or priorities that failed."),
    counter("headroom_procsched_insufficient_alarms_total", Count, &[], "Times the insufficient-resources alarm was raised."),
    counter("headroom_procsched_reload_errors_total", Count, &[], "Process rules a reload could not compile."),
    counter("headroom_procsched_entry_decode_errors_total", Count, &[], "Peers' CPU entries that could not be decoded."),
];

/// The catalogue entry of `name`.
pub fn family(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name)
}

/// Gives the installed recorder every family's help text and unit (once,
/// after installing it).
pub fn describe() {
    for f in FAMILIES {
        let unit = f.unit.metrics_unit();
        match (f.kind, unit) {
            (Kind::Counter, Some(u)) => metrics::describe_counter!(f.name, u, f.help),
            (Kind::Counter, None) => metrics::describe_counter!(f.name, f.help),
            (Kind::Gauge, Some(u)) => metrics::describe_gauge!(f.name, u, f.help),
            (Kind::Gauge, None) => metrics::describe_gauge!(f.name, f.help),
        }
    }
}

/// The operator guide's metric list (docs/operations.md, between the
/// `metrics-reference` markers).
pub fn reference_table() -> String {
    let mut out = String::from("| family | type | meaning |\n|---|---|---|\n");
    for f in FAMILIES {
        let labels = if f.labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", f.labels.join(","))
        };
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        out.push_str(&format!("| `{}{labels}` | {kind} | {} |\n", f.name, f.help));
    }
    out
}

/// Publishes `st` through the `metrics` facade.
pub fn render(st: &Status) {
    metrics::gauge!("headroom_build_info", "version" => headroom_buildinfo::VERSION, "commit" => headroom_buildinfo::COMMIT).set(1.0);
    metrics::gauge!("headroom_uptime_seconds").set(st.uptime_secs);
    for w in &st.workers {
        let idx = w.index.to_string();
        for (s, side) in ["outer", "inner"].iter().enumerate() {
            let l = [("worker", idx.clone()), ("side", side.to_string())];
            metrics::counter!("headroom_worker_rx_packets_total", &l).absolute(w.rx_packets[s]);
            metrics::counter!("headroom_worker_rx_bytes_total", &l).absolute(w.rx_bytes[s]);
            metrics::counter!("headroom_worker_tx_packets_total", &l).absolute(w.tx_packets[s]);
            metrics::counter!("headroom_worker_tx_bytes_total", &l).absolute(w.tx_bytes[s]);
            metrics::counter!("headroom_worker_rx_multi_buffer_packets_total", &l)
                .absolute(w.rx_multi_buffer[s]);
            metrics::counter!("headroom_worker_checksums_completed_total", &l)
                .absolute(w.checksums_completed[s]);
            for (name, o, i) in &w.socket {
                let v = if s == 0 { *o } else { *i };
                metrics::counter!("headroom_xsk_socket_total", "worker" => idx.clone(), "side" => side.to_string(), "stat" => name.clone()).absolute(v);
            }
        }
        metrics::counter!("headroom_worker_aggregates_segmented_total", "worker" => idx.clone())
            .absolute(w.segmented[0]);
        metrics::counter!("headroom_worker_segments_total", "worker" => idx.clone())
            .absolute(w.segmented[1]);
        metrics::counter!("headroom_worker_parse_errors_total", "worker" => idx.clone())
            .absolute(w.parse_errors);
        for (r, result) in ["written", "refused"].iter().enumerate() {
            metrics::counter!("headroom_worker_fast_path_installs_total", "worker" => idx.clone(), "result" => *result)
                .absolute(w.fast_installs[r]);
        }
        for (reason, n) in &w.drops {
            metrics::counter!("headroom_worker_drops_total", "worker" => idx.clone(), "reason" => reason.clone()).absolute(*n);
        }
        metrics::gauge!("headroom_worker_frames_accounted", "worker" => idx.clone())
            .set(w.frames_accounted as f64);
        metrics::counter!("headroom_worker_frame_violations_total", "worker" => idx.clone())
            .absolute(w.frame_violations);
    }
    for i in &st.interfaces {
        let name = || i.name.clone();
        metrics::gauge!("headroom_interface_rx_queues", "interface" => name())
            .set(f64::from(i.rx_queues_now.unwrap_or(i.rx_queues)));
        for (v, p, b) in &i.verdicts {
            metrics::counter!("headroom_xdp_verdict_packets_total", "interface" => name(), "verdict" => v.clone()).absolute(*p);
            metrics::counter!("headroom_xdp_verdict_bytes_total", "interface" => name(), "verdict" => v.clone()).absolute(*b);
        }
        for (reason, n) in &i.fast_path_misses {
            metrics::counter!("headroom_fast_path_misses_total", "interface" => name(), "reason" => reason.clone()).absolute(*n);
        }
        metrics::counter!("headroom_fast_path_checksums_completed_total", "interface" => name())
            .absolute(i.fast_path_checksums_completed);
        metrics::counter!("headroom_fast_path_encapsulated_packets_total", "interface" => name())
            .absolute(i.fast_path_encapsulated);
        metrics::counter!("headroom_fast_path_decapsulated_packets_total", "interface" => name())
            .absolute(i.fast_path_decapsulated);
        metrics::gauge!("headroom_fast_path_flows", "interface" => name())
            .set(i.fast_path_entries as f64);
        metrics::gauge!("headroom_fast_path_flows_capacity", "interface" => name())
            .set(i.fast_path_capacity as f64);
        metrics::counter!("headroom_fast_path_expired_total", "interface" => name())
            .absolute(i.fast_path_expired);
    }
    for j in &st.jobs {
        metrics::counter!("headroom_job_packets_total", "job" => j.name.clone(), "direction" => "in").absolute(j.packets_in);
        metrics::counter!("headroom_job_packets_total", "job" => j.name.clone(), "direction" => "out").absolute(j.packets_out);
        metrics::counter!("headroom_job_bytes_total", "job" => j.name.clone(), "direction" => "in")
            .absolute(j.bytes_in);
        metrics::counter!("headroom_job_bytes_total", "job" => j.name.clone(), "direction" => "out").absolute(j.bytes_out);
        if let Some(r) = &j.response {
            metrics::counter!("headroom_job_requests_total", "job" => j.name.clone(), "result" => "answered").absolute(r.answered);
            metrics::counter!("headroom_job_requests_total", "job" => j.name.clone(), "result" => "unanswered").absolute(r.unanswered);
            for (q, v) in [("0.5", r.p50_ms), ("0.9", r.p90_ms), ("0.99", r.p99_ms)] {
                if let Some(v) = v {
                    metrics::gauge!("headroom_job_response_seconds", "job" => j.name.clone(), "quantile" => q).set(v / 1e3);
                }
            }
            if let Some(i) = r.index {
                metrics::gauge!("headroom_job_goal_index", "job" => j.name.clone()).set(i);
            }
        }
    }
    for (k, v) in &st.response_tracker {
        if !matches!(k.as_str(), "connections" | "capacity") {
            metrics::counter!("headroom_response_tracker_total", "counter" => k.clone())
                .absolute(*v);
        }
    }
    metrics::gauge!("headroom_flows").set(st.flows as f64);
    metrics::counter!("headroom_reloads_total", "result" => "ok").absolute(st.reloads_ok);
    metrics::counter!("headroom_reloads_total", "result" => "rejected").absolute(st.reloads_failed);
    for p in &st.pipes {
        metrics::gauge!("headroom_pipe_capacity_bytes_per_second", "pipe" => p.name.clone())
            .set(p.capacity_bps as f64 / 8.0);
        metrics::gauge!("headroom_pipe_node_credit_bytes", "pipe" => p.name.clone())
            .set(p.node_credit as f64);
        metrics::gauge!("headroom_pipe_immediate_bytes", "pipe" => p.name.clone())
            .set(p.immediate as f64);
        metrics::gauge!("headroom_pipe_nodes", "pipe" => p.name.clone()).set(p.nodes as f64);
        for t in &p.totals {
            for (kind, v) in [
                ("demand", t.demand_bytes),
                ("granted", t.granted_bytes),
                ("sent", t.sent_bytes),
                ("dropped", t.dropped_bytes),
            ] {
                metrics::counter!("headroom_pipe_job_bytes_total", "pipe" => p.name.clone(), "job" => t.job.clone(), "kind" => kind).absolute(v);
            }
        }
    }
    metrics::gauge!("headroom_enforcement").set(if st.enforcement == "off" { 0.0 } else { 1.0 });
    if let Some(h) = &st.history {
        history(h);
    }
    if let Some(m) = &st.memory {
        metrics::gauge!("headroom_resident_memory_bytes").set(m.rss_bytes as f64);
        metrics::gauge!("headroom_sqlite_memory_bytes").set(m.sqlite_bytes as f64);
    }
    if let Some(a) = &st.automation {
        automation(a);
    }
    metrics::counter!("headroom_bandwidth_entries_rejected_total")
        .absolute(st.pipe_entries_rejected);
    if let Some(ex) = &st.exchange {
        let c = |name: &'static str, v: u64| {
            metrics::counter!("headroom_exchange_datagrams_total", "kind" => name).absolute(v)
        };
        c("sent", ex.datagrams_sent);
        c("received", ex.datagrams_received);
        c("accepted", ex.datagrams_accepted);
        c("bad_mac", ex.bad_mac);
        c("replayed", ex.replayed);
        c("malformed", ex.malformed);
        c("rotation_key", ex.rotation_key_verified);
        metrics::counter!("headroom_exchange_sent_bytes_total").absolute(ex.bytes_sent);
        metrics::counter!("headroom_membership_events_total").absolute(ex.membership_events);
        metrics::counter!("headroom_membership_failures_total").absolute(ex.failures);
        metrics::counter!("headroom_membership_failures_held_total").absolute(ex.failures_held);
        if let Some(r) = &ex.receive {
            let g = &r.guard;
            let p = |reason: &'static str, v: u64| {
                metrics::counter!("headroom_exchange_prefilter_rejected_total", "reason" => reason)
                    .absolute(v)
            };
            p("length", g.bad_length);
            p("oversize", g.oversize);
            p("header", g.bad_header);
            p("join_limited", g.join_limited);
            p("join_total_limited", g.join_total_limited);
            p("member_limited", g.member_limited);
            metrics::counter!("headroom_exchange_prefilter_passed_total").absolute(g.passed);
            metrics::counter!("headroom_exchange_kernel_drops_total").absolute(r.kernel_drops);
            metrics::counter!("headroom_exchange_queue_full_total").absolute(r.queue_full);
        }
        metrics::gauge!("headroom_pool_live_nodes").set(ex.live_nodes as f64);
    }
    if let Some(p) = &st.policy {
        for n in &p.nodes {
            let seq = n
                .active
                .as_deref()
                .and_then(|v| v.trim_start_matches('v').parse::<f64>().ok())
                .unwrap_or(0.0);
            metrics::gauge!("headroom_policy_version", "node" => n.node.to_string()).set(seq);
        }
        metrics::gauge!("headroom_policy_enforcing").set(if p.enforcing { 1.0 } else { 0.0 });
        for (event, v) in &p.counters {
            metrics::counter!("headroom_policy_events_total", "event" => event.clone())
                .absolute(*v);
        }
    }
    if let Some(d) = &st.director {
        director(d);
    }
}

fn history(h: &headroom_history::HistoryStatus) {
    use headroom_history::writer::StoreState;
    metrics::gauge!("headroom_history_writing").set(if h.state == StoreState::Ok {
        1.0
    } else {
        0.0
    });
    let f = &h.faults;
    for (fault, v) in [
        ("disk_full", f.disk_full),
        ("read_only", f.read_only),
        ("locked", f.locked),
        ("corrupt", f.corrupt),
        ("too_new", f.too_new),
        ("io", f.io),
    ] {
        metrics::counter!("headroom_history_faults_total", "fault" => fault).absolute(v);
    }
    for (what, v) in [
        ("samples_queue_full", h.samples_dropped_queue_full),
        ("summaries_queue_full", h.summaries_dropped_queue_full),
        ("points_backlog_full", h.points_dropped_backlog_full),
        ("journal_queue_full", h.journal_dropped_queue_full),
        ("journal_backlog_full", h.journal_dropped_backlog_full),
    ] {
        metrics::counter!("headroom_history_dropped_total", "what" => what).absolute(v);
    }
    metrics::gauge!("headroom_history_backlog_points").set(h.backlog_points as f64);
    metrics::counter!("headroom_history_journal_written_total").absolute(h.store.journal_written);
    metrics::counter!("headroom_history_recoveries_total").absolute(h.recoveries);
}

fn director(st: &DirectorStatus) {
    for (name, v) in &st.counters {
        metrics::counter!("headroom_director_total", "counter" => name.clone()).absolute(*v);
    }
    for s in &st.services {
        let l = [("vip", s.name.clone())];
        metrics::counter!("headroom_vip_packets_total", &l).absolute(s.packets);
        metrics::counter!("headroom_vip_bytes_total", &l).absolute(s.bytes);
        metrics::counter!("headroom_vip_new_flows_total", &l).absolute(s.new_flows);
        metrics::counter!("headroom_vip_sticky_hits_total", &l).absolute(s.sticky_hits);
        metrics::counter!("headroom_vip_encapsulated_packets_total", &l).absolute(s.encapsulated);
        metrics::gauge!("headroom_vip_owner", &l).set(s.owner.map_or(0.0, f64::from));
        for (node, c) in &s.placements {
            metrics::counter!("headroom_vip_placements_total", "vip" => s.name.clone(), "node" => node.to_string()).absolute(*c);
        }
    }
}

/// Publishes the process scheduler's snapshot (after each of its ticks).
pub fn render_procsched(snap: &ProcSchedSnapshot) {
    for j in &snap.jobs {
        let job = || j.name.clone();
        metrics::gauge!("headroom_procsched_job_processes", "job" => job())
            .set(j.pids.len() as f64);
        metrics::gauge!("headroom_procsched_job_cpu_cores", "job" => job()).set(j.cores_used);
        metrics::gauge!("headroom_procsched_job_cpu_target_ratio", "job" => job())
            .set(j.target_percent / 100.0);
        metrics::gauge!("headroom_procsched_job_rss_bytes", "job" => job()).set(j.rss_bytes as f64);
    }
    metrics::gauge!("headroom_procsched_insufficient_resources").set(
        if snap.insufficient_resources {
            1.0
        } else {
            0.0
        },
    );
    metrics::gauge!("headroom_procsched_unmanaged_processes").set(snap.unmanaged.processes as f64);
    let st = &snap.stats;
    let c = |name: &'static str, v: u64| metrics::counter!(name).absolute(v);
    c("headroom_procsched_ticks_total", st.ticks);
    c(
        "headroom_procsched_new_processes_total",
        st.scan.new_processes,
    );
    c(
        "headroom_procsched_exited_processes_total",
        st.scan.exited_processes,
    );
    c("headroom_procsched_scan_races_total", st.scan.races);
    c(
        "headroom_procsched_scan_parse_errors_total",
        st.scan.parse_errors,
    );
    c("headroom_procsched_moves_total", st.moves);
    c("headroom_procsched_releases_total", st.releases);
    c(
        "headroom_procsched_recovered_processes_total",
        st.recovered_processes,
    );
    c(
        "headroom_procsched_strays_released_total",
        st.strays_released,
    );
    c("headroom_procsched_move_races_total", st.move_races);
    c("headroom_procsched_backend_errors_total", st.backend_errors);
    c(
        "headroom_procsched_insufficient_alarms_total",
        st.insufficient_alarms,
    );
    c("headroom_procsched_reload_errors_total", st.reload_errors);
    c(
        "headroom_procsched_entry_decode_errors_total",
        st.entry_decode_errors,
    );
}

#[cfg(test)]
mod tests;

fn automation(a: &headroom_agent::automation::AutomationStatus) {
    metrics::gauge!("headroom_automation_evaluating").set(if a.evaluating { 1.0 } else { 0.0 });
    metrics::gauge!("headroom_automation_overlay_info",
        "variant" => a.overlay.variant.clone().unwrap_or_else(|| "base".into()),
        "node_failure" => a.overlay.node_failure.to_string())
    .set(1.0);
    for t in &a.triggers {
        for state in ["idle", "pending", "waiting", "firing"] {
            metrics::gauge!("headroom_trigger_state", "trigger" => t.name.clone(), "state" => state)
                .set(if t.state == state { 1.0 } else { 0.0 });
        }
        metrics::counter!("headroom_trigger_episodes_total", "trigger" => t.name.clone())
            .absolute(t.episodes);
        if let Some(s) = t.last_fired_secs {
            metrics::gauge!("headroom_trigger_last_fired_seconds", "trigger" => t.name.clone())
                .set(s);
        }
    }
    for (name, v) in &a.counters {
        metrics::counter!("headroom_automation_total", "counter" => name.clone()).absolute(*v);
    }
}
