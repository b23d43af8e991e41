//! The exporter's output for a status with one of everything: every family
//! has HELP and TYPE, is in the catalogue with that type and those labels,
//! and is named by the Prometheus conventions; every metric the sources
//! publish is in the catalogue; the operator guide lists the catalogue.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use headroom_agent::status::*;
use headroom_control::procsched::{NiceBackend, ProcessScheduler};
use metrics_exporter_prometheus::PrometheusBuilder;

use super::*;

/// A status in which every part is present, with non-zero counters.
fn full_status() -> Status {
    Status {
        node_id: 1,
        uptime_secs: 12.5,
        reloads_ok: 2,
        reloads_failed: 1,
        interfaces: vec![InterfaceStatus {
            name: "outer".into(),
            verdicts: vec![("redirect".into(), 10, 1000)],
            rx_queues: 2,
            fast_path_misses: vec![("no_flow".into(), 3)],
            fast_path_checksums_completed: 4,
            fast_path_encapsulated: 5,
            fast_path_decapsulated: 6,
            ..Default::default()
        }],
        workers: vec![WorkerStatus {
            index: 0,
            rx_packets: [1, 2],
            rx_bytes: [64, 128],
            tx_packets: [2, 1],
            tx_bytes: [128, 64],
            drops: vec![("pacer_queue_full".into(), 7)],
            socket: vec![("rx_dropped".into(), 1, 0)],
            frames_total: 4096,
            frames_accounted: 4096,
            rx_multi_buffer: [1, 0],
            checksums_completed: [1, 1],
            segmented: [1, 3],
            fast_installs: [5, 1],
            parse_errors: 1,
            ..Default::default()
        }],
        jobs: vec![JobStatus {
            name: "web".into(),
            packets_in: 10,
            bytes_in: 1000,
            packets_out: 9,
            bytes_out: 900,
            flows: 1,
            removed: false,
            response: Some(headroom_agent::status::ResponseStatus {
                goal: "90% within 50ms".into(),
                index: Some(0.4),
                requests: 10,
                answered: 9,
                unanswered: 1,
                p50_ms: Some(20.0),
                p90_ms: Some(20.5),
                p99_ms: Some(21.0),
                mean_ms: Some(20.1),
                setups: 2,
                setup_p50_ms: Some(0.1),
            }),
        }],
        flows: 1,
        response_tracker: vec![("table_full".into(), 0), ("connections".into(), 1)],
        pipes: vec![PipeStatus {
            name: "uplink".into(),
            capacity_bps: 100_000_000,
            node_credit: 1000,
            immediate: 100,
            nodes: 2,
            totals: vec![headroom_agent::status::PipeJobTotals {
                job: "web".into(),
                demand_bytes: 900,
                granted_bytes: 1000,
                sent_bytes: 900,
                dropped_bytes: 0,
            }],
            ..Default::default()
        }],
        enforcement: "on".into(),
        history: Some(headroom_history::HistoryStatus::default()),
        memory: Some(headroom_agent::status::MemoryStatus {
            rss_bytes: 40 << 20,
            sqlite_bytes: 4 << 20,
        }),
        automation: Some(headroom_agent::automation::AutomationStatus {
            master: Some(1),
            evaluating: true,
            triggers: vec![headroom_agent::automation::TriggerRow {
                name: "bulk-squeezed".into(),
                condition: "squeezed(bulk, pipe=wan)".into(),
                state: "firing".into(),
                since_secs: Some(3.0),
                episodes: 1,
                last_fired_secs: Some(3.0),
            }],
            counters: vec![("fired".into(), 1)],
            ..Default::default()
        }),
        pipe_entries_rejected: 1,
        exchange: Some(ExchangeStatus {
            master: 1,
            datagrams_sent: 3,
            bytes_sent: 300,
            membership_events: 1,
            live_nodes: 2,
            receive: Some(Default::default()),
            ..Default::default()
        }),
        director: Some(DirectorStatus {
            counters: vec![("no_backend".into(), 1)],
            services: vec![VipStatus {
                name: "www".into(),
                owner: Some(1),
                packets: 1,
                bytes: 60,
                placements: vec![(2, 1)],
                ..Default::default()
            }],
            ..Default::default()
        }),
        policy: Some(PolicyStatus {
            active: Some("v2".into()),
            enforcing: true,
            nodes: vec![NodePolicyStatus {
                node: 1,
                active: Some("v2".into()),
                current: true,
                rejected: None,
            }],
            counters: vec![("activations".into(), 2)],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The process scheduler's snapshot with one job (nothing ticked).
fn snapshot() -> ProcSchedSnapshot {
    let cfg = headroom_config::Config::parse(
        "[node]\nid = 1\naddress = \"10.0.0.1\"\n[interfaces]\nouter = \"a\"\ninner = \"b\"\n\
         [[job]]\nname = \"batch\"\ncpu = { server_percent = 20 }\n[[job.process]]\nname = \"x\"\n",
        Path::new("t.toml"),
    )
    .unwrap();
    let jobs: Vec<_> = cfg.jobs.iter().map(|j| j.process_job()).collect();
    ProcessScheduler::new(&jobs, Box::new(NiceBackend::new()))
        .unwrap()
        .snapshot()
}

/// What the exporter serves after one round of publishing.
fn scrape() -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        describe();
        render(&full_status());
        render_procsched(&snapshot());
    });
    handle.render()
}

/// One family as the exposition shows it.
#[derive(Debug, Default)]
struct Exposed {
    help: Option<String>,
    kind: Option<String>,
    labels: BTreeSet<String>,
    samples: usize,
}

fn parse(text: &str) -> BTreeMap<String, Exposed> {
    let mut out: BTreeMap<String, Exposed> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.into()).or_default().help = Some(help.into());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            out.entry(name.into()).or_default().kind = Some(kind.into());
        } else {
            let end = line.find(['{', ' ']).expect("sample line");
            let e = out.entry(line[..end].into()).or_default();
            e.samples += 1;
            if let Some(inner) = line[end..]
                .strip_prefix('{')
                .and_then(|l| l.split_once('}'))
            {
                for kv in inner.0.split(',') {
                    e.labels.insert(kv.split('=').next().unwrap().into());
                }
            }
        }
    }
    out
}

/// Unit words that are not base units, and spellings of base units that
/// Prometheus does not use.
const NOT_BASE_UNITS: &[&str] = &[
    "ns",
    "us",
    "ms",
    "usec",
    "msec",
    "sec",
    "secs",
    "nanoseconds",
    "microseconds",
    "milliseconds",
    "minutes",
    "hours",
    "days",
    "bit",
    "bits",
    "bps",
    "kbit",
    "mbit",
    "gbit",
    "kb",
    "mb",
    "gb",
    "kib",
    "mib",
    "gib",
    "percent",
    "pct",
];

/// Why `f` does not follow the naming conventions, if it does not.
fn nonconforming(f: &Family) -> Option<String> {
    let n = f.name;
    if !n.starts_with("headroom_")
        || !n
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        || n.contains("__")
        || n.ends_with('_')
    {
        return Some(format!("{n}: not headroom_ and snake case"));
    }
    let base = match (f.kind, n.strip_suffix("_total")) {
        (Kind::Counter, Some(b)) => b,
        (Kind::Counter, None) => return Some(format!("{n}: a counter without _total")),
        (Kind::Gauge, Some(_)) => return Some(format!("{n}: a gauge with _total")),
        (Kind::Gauge, None) => n,
    };
    let words: Vec<&str> = base.split('_').collect();
    if let Some(w) = words.iter().find(|w| NOT_BASE_UNITS.contains(w)) {
        return Some(format!(
            "{n}: `{w}` is not a base unit (seconds, bytes, ratio)"
        ));
    }
    let all = [
        Unit::Bytes,
        Unit::BytesPerSecond,
        Unit::Seconds,
        Unit::Ratio,
        Unit::Cores,
        Unit::Info,
    ];
    match f.unit.suffix() {
        Some(sfx) if !base.ends_with(sfx) => {
            return Some(format!(
                "{n}: measured in {:?}, so it ends in {sfx}",
                f.unit
            ))
        }
        Some(_) => {}
        None => {
            if let Some(u) = all.iter().find(|u| base.ends_with(u.suffix().unwrap())) {
                return Some(format!("{n}: ends like a {u:?} family but counts things"));
            }
        }
    }
    if words.contains(&"bytes") && !matches!(f.unit, Unit::Bytes | Unit::BytesPerSecond) {
        return Some(format!("{n}: names bytes but is not measured in bytes"));
    }
    if words.contains(&"seconds") && !matches!(f.unit, Unit::Seconds | Unit::BytesPerSecond) {
        return Some(format!("{n}: names seconds but is not measured in seconds"));
    }
    if f.help.is_empty() || !f.help.ends_with('.') || f.help.contains('\n') {
        return Some(format!("{n}: help text must be one sentence"));
    }
    None
}

#[test]
fn the_naming_check_catches_what_the_conventions_forbid() {
    let bad = [
        counter("headroom_poll_timeout_ms_total", Count, &[], "x."),
        counter("headroom_frames", Count, &[], "x."),
        gauge("headroom_frames_total", Count, &[], "x."),
        gauge("headroom_cpu_target_percent", Count, &[], "x."),
        gauge("headroom_queue_depth", Bytes, &[], "x."),
        counter("headroom_sent_bytes_total", Count, &[], "x."),
        gauge("headroom_delay_seconds", Count, &[], "x."),
        gauge("headroom_flows", Count, &[], ""),
        gauge("Headroom-flows", Count, &[], "x."),
    ];
    for f in bad {
        assert!(nonconforming(&f).is_some(), "{} passed", f.name);
    }
    assert_eq!(
        nonconforming(&gauge("headroom_delay_seconds", Seconds, &[], "x.")),
        None
    );
}

#[test]
fn every_family_has_help_a_type_and_a_conforming_name() {
    for f in FAMILIES {
        if let Some(why) = nonconforming(f) {
            panic!("{why}");
        }
    }
    let names: BTreeSet<_> = FAMILIES.iter().map(|f| f.name).collect();
    assert_eq!(names.len(), FAMILIES.len(), "a family is listed twice");

    let text = scrape();
    let exposed = parse(&text);
    for (name, e) in &exposed {
        let f = family(name).unwrap_or_else(|| panic!("{name} is not in the catalogue"));
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        assert_eq!(e.kind.as_deref(), Some(kind), "{name}'s TYPE");
        assert_eq!(e.help.as_deref(), Some(f.help), "{name}'s HELP");
        assert!(e.samples > 0, "{name} has no sample");
        let labels: BTreeSet<String> = f.labels.iter().map(|l| l.to_string()).collect();
        assert_eq!(e.labels, labels, "{name}'s labels");
    }
    // Every family of the catalogue is published: by this round (all of
    // this module's) or at its own call site elsewhere.
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/metrics.rs");
    let elsewhere: BTreeMap<_, _> = source_literals()
        .into_iter()
        .filter(|(_, (_, file))| *file != here)
        .collect();
    assert!(exposed.len() >= FAMILIES.len() - elsewhere.len(), "{text}");
    for f in FAMILIES {
        assert!(
            exposed.contains_key(f.name) || elsewhere.contains_key(f.name),
            "{} is in the catalogue but never published",
            f.name
        );
    }
}

/// The crate directories whose sources may publish metrics.
fn source_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        "src",
        "agent/src",
        "control/src",
        "dataplane/src",
        "config/src",
        "console/src",
        "history/src",
    ]
    .iter()
    .map(|d| root.join(d))
    .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every metric name written literally in a `metrics::` macro, with the
/// macro (counter, gauge, histogram) and the file.
fn source_literals() -> BTreeMap<String, (String, PathBuf)> {
    let mut files = Vec::new();
    for d in source_dirs() {
        rust_files(&d, &mut files);
    }
    let mut found = BTreeMap::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for kind in ["counter", "gauge", "histogram"] {
            let pat = format!("metrics::{kind}!(");
            for (i, _) in text.match_indices(&pat) {
                let rest = text[i + pat.len()..].trim_start();
                if let Some(lit) = rest.strip_prefix('"') {
                    let name = &lit[..lit.find('"').unwrap()];
                    found.insert(name.to_string(), (kind.to_string(), f.clone()));
                }
            }
        }
    }
    found
}

#[test]
fn every_metric_the_sources_publish_is_in_the_catalogue() {
    let found = source_literals();
    assert!(found.contains_key("headroom_fast_path_disabled_total"));
    for (name, (kind, _)) in &found {
        let f = family(name).unwrap_or_else(|| panic!("{name} ({kind}) is not in FAMILIES"));
        let want = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        assert_eq!(kind, want, "{name} is published as a {kind}");
    }
}

const BEGIN: &str = "<!-- metrics-reference:begin (generated from src/metrics.rs FAMILIES; HEADROOM_BLESS=1 cargo test -p headroom --lib metrics rewrites it) -->\n";
const END: &str = "<!-- metrics-reference:end -->";

#[test]
fn the_operator_guide_lists_every_family() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let start = doc
        .find(BEGIN)
        .expect("the metrics-reference markers in docs/operations.md");
    let body = start + BEGIN.len();
    let end = body + doc[body..].find(END).expect("the end marker");
    let want = reference_table();
    if doc[body..end] != want {
        if std::env::var_os("HEADROOM_BLESS").is_some() {
            let mut new = doc.clone();
            new.replace_range(body..end, &want);
            std::fs::write(&path, new).unwrap();
        } else {
            panic!(
                "docs/operations.md's metric list differs from the catalogue; \
                 rerun with HEADROOM_BLESS=1 to rewrite it. It should read:\n{want}"
            );
        }
    }
}
