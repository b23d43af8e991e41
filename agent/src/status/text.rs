//! The status as text, for `headroomctl status` (and examples that print
//! it): one line per interface, worker, pipe and pool, tables of jobs and
//! CPU, then the director.

use std::fmt::Write;

use super::Status;

fn history(o: &mut String, h: &headroom_history::HistoryStatus) {
    use headroom_history::writer::StoreState;
    let state = match h.state {
        StoreState::Ok => "writing",
        StoreState::Starting => "starting",
        StoreState::Failing => "FAILING",
        StoreState::Stopped => "stopped",
    };
    let s = &h.store;
    let _ = writeln!(
        o,
        "history: {state} {} ({:.1} MiB, {} points and {} journal entries written, {} samples queued; dropped: {} samples, {} summaries, {} points, {} journal entries)",
        h.path,
        s.bytes_used as f64 / f64::from(1u32 << 20),
        s.points_written,
        s.journal_written,
        h.samples_queued,
        h.samples_dropped_queue_full,
        h.summaries_dropped_queue_full,
        h.points_dropped_backlog_full,
        h.journal_dropped_queue_full + h.journal_dropped_backlog_full
    );
    if h.state == StoreState::Failing || h.backlog_points > 0 || h.journal_backlog > 0 {
        let _ = writeln!(
            o,
            "  {}{} points and {} journal entries wait in memory (written when the store works again)",
            h.last_error
                .as_deref()
                .map(|e| format!("{e}; "))
                .unwrap_or_default(),
            h.backlog_points,
            h.journal_backlog
        );
    }
    if h.corrupt_files_moved > 0 {
        let _ = writeln!(
            o,
            "  {} corrupt file(s) moved aside, the last to {}",
            h.corrupt_files_moved,
            h.last_corrupt_file.as_deref().unwrap_or("?")
        );
    }
}

impl Status {
    /// The status as `headroomctl status` prints it.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let o = &mut out;
        let st = self;
        let _ = writeln!(
            o,
            "node {} ({}), up {:.1}s, config {}",
            st.node_id, st.node_name, st.uptime_secs, st.config_file
        );
        let _ = writeln!(
            o,
            "reloads: {} ok, {} rejected",
            st.reloads_ok, st.reloads_failed
        );
        if let Some(e) = &st.last_reload_error {
            let _ = writeln!(o, "  last rejected reload: {e}");
        }
        for i in &st.interfaces {
            let v: Vec<String> = i
                .verdicts
                .iter()
                .filter(|v| v.1 > 0)
                .map(|(n, p, _)| format!("{n}={p}"))
                .collect();
            let _ = writeln!(
                o,
                "interface {} ({}, {}, xdp {}, MTU {}, {} rx queue(s), served {:?}{}): {}",
                i.name,
                i.role,
                if i.driver.is_empty() {
                    "driver ?"
                } else {
                    &i.driver
                },
                i.xdp_mode,
                i.mtu,
                i.rx_queues,
                i.served_queues,
                if i.completes_checksums {
                    ", completes partial checksums"
                } else {
                    ""
                },
                v.join(" ")
            );
            let share = i.bypassed_share();
            if share > 0.0 {
                let _ = writeln!(o,
                "  WARNING: {:.1}% of managed frames on {} bypassed the workers (receive queue without a socket: pass_no_xsk)",
                share * 100.0,
                i.name
            );
            }
            if let Some(n) = i.rx_queues_now {
                let _ = writeln!(o,
                "  WARNING: {} now has {n} receive queue(s), {} at start: restart headroomd to serve them all",
                i.name, i.rx_queues
            );
            }
            if i.fast_path {
                let m: Vec<String> = i
                    .fast_path_misses
                    .iter()
                    .filter(|m| m.1 > 0)
                    .map(|(n, c)| format!("{n}={c}"))
                    .collect();
                let _ = writeln!(
                    o,
                    "  fast path on: {} frames forwarded by XDP; to the workers: {}",
                    i.verdict("fast_forward"),
                    if m.is_empty() {
                        "none".to_string()
                    } else {
                        m.join(" ")
                    }
                );
                let full = i.fast_path_entries as f64 / i.fast_path_capacity.max(1) as f64;
                let _ = writeln!(
                    o,
                    "  fast-path table: {} of {} flows ({:.1}% full), {} idle flows expired",
                    i.fast_path_entries,
                    i.fast_path_capacity,
                    full * 100.0,
                    i.fast_path_expired
                );
                if full >= 0.9 {
                    let _ = writeln!(
                        o,
                        "  WARNING: the fast-path table is {:.0}% full: flows beyond it return to the workers; raise [workers] fast_path_flows",
                        full * 100.0
                    );
                }
            } else if !i.fast_path_off_reason.is_empty() {
                let _ = writeln!(o, "  fast path off: {}", i.fast_path_off_reason);
            }
            let too_big = i.verdict("pass_too_big");
            if too_big > 0 {
                let _ = writeln!(o,
                "  {too_big} frame(s) longer than a worker takes passed to the kernel path (pass_too_big)"
            );
            }
        }
        for w in &st.workers {
            let _ = writeln!(o,
            "worker {} {} queues outer {:?} inner {:?} zero-copy {}/{}: rx {}/{} tx {}/{} pkts (outer/inner), frames {}/{} accounted, violations {}",
            w.index,
            w.core.map_or("unpinned".to_string(), |c| format!("core {c}")),
            w.queues_outer,
            w.queues_inner,
            w.zero_copy[0],
            w.zero_copy[1],
            w.rx_packets[0], w.rx_packets[1], w.tx_packets[0], w.tx_packets[1],
            w.frames_accounted, w.frames_total, w.frame_violations
        );
            if w.rx_multi_buffer != [0, 0] || w.segmented[0] > 0 || w.checksums_completed != [0, 0]
            {
                let _ = writeln!(o,
                "  multi-buffer packets {}/{} (outer/inner), aggregates segmented {} into {} segments, partial checksums completed {}/{}",
                w.rx_multi_buffer[0],
                w.rx_multi_buffer[1],
                w.segmented[0],
                w.segmented[1],
                w.checksums_completed[0],
                w.checksums_completed[1]
            );
            }
            let d: Vec<String> = w
                .drops
                .iter()
                .filter(|d| d.1 > 0)
                .map(|(n, c)| format!("{n}={c}"))
                .collect();
            if !d.is_empty() {
                let _ = writeln!(o, "  drops: {}", d.join(" "));
            }
        }
        let _ = writeln!(
            o,
            "{:<20} {:>12} {:>14} {:>12} {:>14} {:>8}",
            "job", "pkts in", "bytes in", "pkts out", "bytes out", "flows"
        );
        for j in &st.jobs {
            let name = if j.removed {
                format!("{} (removed)", j.name)
            } else {
                j.name.clone()
            };
            let _ = writeln!(
                o,
                "{:<20} {:>12} {:>14} {:>12} {:>14} {:>8}",
                name, j.packets_in, j.bytes_in, j.packets_out, j.bytes_out, j.flows
            );
        }
        for j in &st.jobs {
            let Some(r) = &j.response else { continue };
            let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
            let _ = writeln!(
                o,
                "response {}: goal {}, index {}; {} requests ({} answered, {} unanswered), p50 {}, p90 {}, p99 {}, mean {}; {} connections set up, p50 {} (since start)",
                j.name,
                r.goal,
                r.index.map_or("-".to_string(), |i| format!("{i:.2}")),
                r.requests,
                r.answered,
                r.unanswered,
                ms(r.p50_ms),
                ms(r.p90_ms),
                ms(r.p99_ms),
                ms(r.mean_ms),
                r.setups,
                ms(r.setup_p50_ms)
            );
        }
        if let Some(ex) = &st.exchange {
            let m: Vec<String> = ex
                .members
                .iter()
                .map(|m| format!("{}:{}", m.id, m.state))
                .collect();
            let _ = writeln!(o,
            "pool: master {}, members [{}]; datagrams sent {} received {} accepted {}, dropped: bad key {} replayed {} malformed {}",
            ex.master,
            m.join(" "),
            ex.datagrams_sent,
            ex.datagrams_received,
            ex.datagrams_accepted,
            ex.bad_mac,
            ex.replayed,
            ex.malformed
        );
            if let Some(r) = &ex.rotation_key_id {
                let other: Vec<String> = ex
                    .members
                    .iter()
                    .filter(|m| m.rotation_key)
                    .map(|m| m.id.to_string())
                    .collect();
                let _ = writeln!(
                    o,
                    "  key rotation: signs with key {}, accepts also key {r} ({} datagrams); members on key {r}: [{}]",
                    ex.key_id,
                    ex.rotation_key_verified,
                    other.join(" ")
                );
            } else if !ex.key_id.is_empty() {
                let _ = writeln!(o, "  pool key {}", ex.key_id);
            }
            let _ = writeln!(
                o,
                "pool: members declared failed {}, held back during receive losses {}",
                ex.failures, ex.failures_held
            );
            if let Some(r) = &ex.receive {
                let g = &r.guard;
                let _ = writeln!(o,
                "pool receive: kernel drops {} (buffer {} B), queue full {}; pre-filter passed {} rejected: length {} oversize {} header {} join-limited {} join-total-limited {} member-limited {}",
                r.kernel_drops, r.receive_buffer, r.queue_full, g.passed, g.bad_length, g.oversize,
                g.bad_header, g.join_limited, g.join_total_limited, g.member_limited
            );
            }
        }
        if let Some(pol) = &st.policy {
            let nodes: Vec<String> = pol
                .nodes
                .iter()
                .map(|n| {
                    let v = n.active.as_deref().unwrap_or("none");
                    let mark = if n.current { "" } else { " (behind)" };
                    format!("node {} {v}{mark}", n.node)
                })
                .collect();
            let _ = writeln!(
                o,
                "policy: {} here{}; pool: {}",
                pol.active_id
                    .as_deref()
                    .unwrap_or("none (the node file's sections are in force)"),
                if pol.enforcing {
                    ""
                } else {
                    ", not enforcing until the pool confirms it"
                },
                nodes.join(", ")
            );
            if let Some(r) = &pol.rejected {
                let _ = writeln!(o, "  last refused here: {r}");
            }
        }
        if st.enforcement == "off" {
            let _ = writeln!(o, "enforcement: OFF (monitor-only: nothing paced, no CPU shares set; everything measured and recorded; [pool] enforcement in the policy)");
        }
        if let Some(h) = &st.history {
            history(o, h);
        }
        if let Some(m) = &st.memory {
            let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
            let _ = writeln!(
                o,
                "memory: resident {:.1} MiB, of it SQLite (history) {:.1} MiB",
                mib(m.rss_bytes),
                mib(m.sqlite_bytes)
            );
        }
        if let Some(a) = st.automation.as_ref().filter(|a| {
            !a.triggers.is_empty() || a.overlay != crate::automation::OverlayState::default()
        }) {
            let firing = a.triggers.iter().filter(|t| t.state == "firing").count();
            let _ = writeln!(
                o,
                "automation: in force {}; {} trigger(s), {firing} firing; evaluated by server {} (`headroomctl triggers`)",
                a.overlay.describe(),
                a.triggers.len(),
                a.master.map_or("?".into(), |m| m.to_string()),
            );
        }
        if !st.pool.is_empty() {
            pool(o, &st.pool);
        }
        for p in &st.pipes {
            let _ = writeln!(o,
            "pipe {} ({}): {} bit/s shared by {} server(s); this server's credit {} B + {} B immediate per interval",
            p.name, p.direction, p.capacity_bps, p.nodes, p.node_credit, p.immediate
        );
            for (job, credit, sent, queued, dropped) in &p.jobs {
                let _ = writeln!(o, "  {job:<18} credit {credit:>9} B  sent {sent:>9} B  queued {queued:>8} B  dropped {dropped:>8} B");
            }
        }
        if let Some(cpu) = &st.cpu {
            let _ = writeln!(
                o,
                "cpu: {} ({} local cores, {} in the pool){}",
                cpu.backend,
                cpu.local_cores,
                cpu.pool_cores,
                cpu.insufficient_resources
                    .as_ref()
                    .map(|r| format!(", INSUFFICIENT RESOURCES: {r}"))
                    .unwrap_or_default()
            );
            let _ = writeln!(
                o,
                "{:<20} {:>6} {:>10} {:>10} {:>8} {:>8} {:>9}",
                "job", "procs", "cores", "rss MiB", "target%", "weight", "instances"
            );
            for j in &cpu.jobs {
                let _ = writeln!(
                    o,
                    "{:<20} {:>6} {:>10.3} {:>10.1} {:>8.1} {:>8} {:>9}",
                    j.name,
                    j.pids.len(),
                    j.cores_used,
                    j.rss_bytes as f64 / 1048576.0,
                    j.target_percent,
                    j.weight,
                    j.pool_instances
                );
                if !j.pids.is_empty() {
                    let shown: Vec<String> =
                        j.pids.iter().take(16).map(|p| p.to_string()).collect();
                    let more = j.pids.len().saturating_sub(16);
                    let tail = if more > 0 {
                        format!(" (+{more} more)")
                    } else {
                        String::new()
                    };
                    let _ = writeln!(o, "{:<20} processes: {}{tail}", "", shown.join(" "));
                }
            }
            let _ = writeln!(
                o,
                "{:<20} {:>6} {:>10.3}",
                "(unmanaged)", cpu.unmanaged_processes, cpu.unmanaged_cores
            );
        }
        // Flow director.
        if let Some(d) = &st.director {
            d.render_text(o);
        }
        out
    }
}

/// The pool section of the status text for `nodes` (`status --node N`
/// renders one).
pub fn render_pool(nodes: &[super::PoolNodeStatus]) -> String {
    let mut o = String::new();
    pool(&mut o, nodes);
    o
}

/// The pool from this server: every member's summary, then every job
/// across the members.
fn pool(o: &mut String, nodes: &[super::PoolNodeStatus]) {
    let window = nodes.iter().map(|n| n.window_ms).max().unwrap_or(0);
    let _ = writeln!(
        o,
        "pool: {} server(s), rates over {window} ms:",
        nodes.len()
    );
    for n in nodes {
        let age = n.age_ms.map_or("no summary yet".to_string(), |a| {
            format!("updated {a} ms ago")
        });
        let cpu = if n.cores == 0 {
            "CPU not measured (no process rules)".to_string()
        } else {
            format!(
                "{} core(s), {:.2} used, {:.1}% headroom (idle share its jobs leave)",
                n.cores, n.cpu_cores, n.headroom_percent
            )
        };
        let _ = writeln!(
            o,
            "  node {} {}: policy {}, {cpu}, {} job(s), {} VIP(s), {age}{}",
            n.node,
            n.state,
            n.policy.as_deref().unwrap_or("none"),
            n.jobs_total,
            n.vips_total,
            n.error
                .as_ref()
                .map(|e| format!(" (summary unreadable: {e})"))
                .unwrap_or_default()
        );
    }
    let mut names: Vec<&str> = nodes
        .iter()
        .flat_map(|n| n.jobs.iter().map(|j| j.name.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let _ = writeln!(o, "  job {name}:");
        for n in nodes {
            let Some(j) = n.jobs.iter().find(|j| j.name == name) else {
                continue;
            };
            let pipe = j
                .pipe
                .as_ref()
                .map(|p| {
                    format!(
                        "; {} booked {:.2}, granted {:.2}, sent {:.2}, dropped {:.2} Mbit/s",
                        p.pipe, p.booked_mbit_s, p.granted_mbit_s, p.sent_mbit_s, p.dropped_mbit_s
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "    node {}: in {:.2} Mbit/s, out {:.2} Mbit/s, {:.2} cores, {} flows{pipe}",
                n.node, j.rx_mbit_s, j.tx_mbit_s, j.cpu_cores, j.connections
            );
        }
    }
    for n in nodes {
        for v in &n.vips {
            let _ = writeln!(
                o,
                "  vip {} on node {}: {} placements, {} new flows, health {}",
                v.name, n.node, v.placements, v.flows, v.health
            );
        }
    }
}
