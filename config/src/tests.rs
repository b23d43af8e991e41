//! Parsing of the shipped files and every validation error.

use std::path::Path;

use crate::{Config, ConfigError, Rate};

const MIN: &str = r#"
[node]
id = 1
address = "10.0.0.1"

[interfaces]
outer = "eth0"
inner = "eth1"
"#;

fn parse(src: &str) -> Result<Config, ConfigError> {
    Config::parse(src, Path::new("test.toml"))
}

/// The error for `MIN` followed by `extra`: (line, field, message).
fn invalid(extra: &str) -> (usize, String, String) {
    match parse(&format!("{MIN}{extra}")) {
        Err(ConfigError::Invalid {
            line,
            field,
            message,
            ..
        }) => (line, field, message),
        other => panic!("expected a validation error for {extra:?}, got {other:?}"),
    }
}

#[test]
fn reference_file_parses() {
    let src = include_str!("../headroom.toml");
    let cfg = parse(src).expect("config/headroom.toml must be valid");
    assert_eq!(cfg.node.id, 1);
    assert_eq!(cfg.jobs.len(), 2);
    assert_eq!(cfg.pipes[0].capacity, Rate::Bps(100_000_000));
    assert_eq!(cfg.jobs[0].flow_rules.len(), 2);
    assert!(cfg.jobs[0].cpu.is_some());
    assert_eq!(cfg.jobs[0].process_rules.len(), 1);
}

#[test]
fn minimal_file_gets_defaults() {
    let cfg = parse(MIN).unwrap();
    assert_eq!(cfg.workers.batch_size, 64);
    assert_eq!(
        cfg.control.high_freq_interval,
        std::time::Duration::from_millis(20)
    );
    assert_eq!(cfg.node_name(), "node-1");
    assert!(cfg.exchange.key_file.is_none());
    // No metrics endpoint unless configured.
    assert!(cfg.metrics.listen.is_none());
    // The reference's endpoint is on loopback, on Headroom's own port
    // (not node_exporter's 9100).
    let reference = parse(include_str!("../headroom.toml")).unwrap();
    assert_eq!(
        reference.metrics.listen,
        Some("127.0.0.1:7947".parse().unwrap())
    );
}

#[test]
fn syntax_errors_name_file_line_and_column() {
    let err = parse("[node]\nid = 1\naddress = \"10.0.0.1\"\nbogus = = 3\n").unwrap_err();
    match &err {
        ConfigError::Syntax { file, line, .. } => {
            assert_eq!(file, Path::new("test.toml"));
            assert_eq!(*line, 4);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().starts_with("test.toml:4:"), "{err}");
}

#[test]
fn type_and_unknown_field_errors_point_at_the_line() {
    let err = parse(&format!("{MIN}\n[workers]\nbatch_size = \"big\"\n")).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { line: 11, .. }), "{err}");
    let err = parse(&format!("{MIN}\n[workers]\nbatchsize = 3\n")).unwrap_err();
    assert!(err.to_string().contains("batchsize"), "{err}");
    let err = parse(&format!(
        "{MIN}\n[[job]]\nname = \"a\"\n[[job.flow]]\nlocal = \"10.0.0.0/33\"\n"
    ))
    .unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { line: 13, .. }), "{err}");
    let err = parse(&format!(
        "{MIN}\n[[pipe]]\nname = \"p\"\ncapacity = \"fast\"\n"
    ))
    .unwrap_err();
    assert!(err.to_string().contains("invalid rate"), "{err}");
}

#[test]
fn every_validation_rule() {
    let cases: &[(&str, &str)] = &[
        ("[workers]\ncores = []\n", "workers.cores"),
        ("[workers]\ncores = [1, 1]\n", "workers.cores[1]"),
        ("[workers]\ncores = [0, 1]\nqueues = [0]\n", "workers.queues"),
        ("[workers]\ncores = [0]\nqueues = [0, 0]\n", "workers.queues[1]"),
        ("[workers]\ncores = [0]\nqueues = [64]\n", "workers.queues[0]"),
        ("[workers]\nbatch_size = 0\n", "workers.batch_size"),
        ("[workers]\nring_size = 1000\n", "workers.ring_size"),
        ("[workers]\nfill_size = 32\n", "workers.fill_size"),
        ("[workers]\nframe_size = 1000\n", "workers.frame_size"),
        ("[workers]\nframe_count = 100\n", "workers.frame_count"),
        ("[workers]\nmax_memory_share = 0\n", "workers.max_memory_share"),
        ("[workers]\npoll_timeout_ms = 0\n", "workers.poll_timeout_ms"),
        ("[workers]\npublish_interval_ms = 1\n", "workers.publish_interval_ms"),
        ("[workers]\npacer_burst_us = 1\n", "workers.pacer_burst_us"),
        ("[workers]\npacer_max_queue_delay_ms = 0\n", "workers.pacer_max_queue_delay_ms"),
        ("[classifier]\nflow_capacity = 0\n", "classifier.flow_capacity"),
        ("[classifier]\nflow_capacity = 1000000000000000\n", "classifier.flow_capacity"),
        ("[workers]\nframe_count = 2147483648\n", "workers.frame_count"),
        ("[exchange]\nport = 0\n", "exchange.port"),
        ("[exchange]\npeers = [\"2@10.0.0.2:7946\", \"2@10.0.0.3:7946\"]\n", "exchange.peers[1]"),
        ("[exchange]\npeers = [\"0@10.0.0.2:7946\"]\n", "exchange.peers[0]"),
        ("[exchange]\npeers = [\"1@10.0.0.9:7946\"]\n", "exchange.peers[0]"),
        ("[classifier]\nidle_timeout_secs = 0\n", "classifier.idle_timeout_secs"),
        ("[control]\nhigh_freq_ms = 5\n", "control.high_freq_ms"),
        ("[control]\nlow_freq_ms = 15\n", "control.low_freq_ms"),
        ("[exchange]\npeers = [\"x\"]\n", "exchange.peers[0]"),
        ("[exchange]\nfailure_timeout_ms = 10\n", "exchange.failure_timeout_ms"),
        ("[exchange]\nmtu = 100\n", "exchange.mtu"),
        ("[cpu]\ncgroup_parent = \"a/b\"\n", "cpu.cgroup_parent"),
        ("[[pipe]]\nname = \"p\"\ncapacity = \"1kbit\"\n", "pipe[0].capacity"),
        ("[[pipe]]\nname = \"p\"\ncapacity = \"10%\"\n", "pipe[0].capacity"),
        ("[[pipe]]\nname = \"p\"\ncapacity = 100000\nimmediate_share = 101\n", "pipe[0].immediate_share"),
        ("[[pipe]]\nname = \"p\"\ncapacity = 100000\n[[pipe]]\nname = \"p\"\ncapacity = 100000\n", "pipe[1].name"),
        ("[[job]]\nname = \"a\"\n[[job]]\nname = \"a\"\n", "job[1].name"),
        ("[[job]]\nname = \"default\"\n", "job[0].name"),
        ("[[job]]\nname = \"a\"\n[[job.booking]]\npipe = \"nope\"\nrate = \"1Mbit\"\n", "job[0].booking[0].pipe"),
        ("[[job]]\nname = \"a\"\n[[job.process]]\n", "job[0].process"),
        ("[deploy]\nhost = \"eth1\"\n", "deploy.host"),
        ("[deploy]\nbridge = \"a-name-far-too-long\"\n", "deploy.bridge"),
        ("[deploy]\nbridge = \"hr-host\"\n", "deploy.bridge"),
        ("[deploy]\nmtu = 100\n", "deploy.mtu"),
        ("[deploy]\ninner_queues = 0\n", "deploy.inner_queues"),
    ];
    for (extra, field) in cases {
        let (line, f, msg) = invalid(extra);
        assert_eq!(&f, field, "for {extra:?}: {msg}");
        assert!(line > 0 || f == "workers.cores", "no line for {field}");
    }
}

/// Every numeric bound, just outside and just inside, on both sides: the
/// outside value is refused naming its field, the inside one passes.
#[test]
fn every_numeric_bound() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // (section and key, below or above, inside, field)
        ("[node]\nid", "0", "65535", "node.id"),
        (
            "[workers]\nbatch_size",
            "1025",
            "1024",
            "workers.batch_size",
        ),
        (
            "[workers]\nring_size",
            "131072",
            "65536",
            "workers.ring_size",
        ),
        ("[workers]\nring_size", "32", "64", "workers.ring_size"),
        (
            "[workers]\nfill_size",
            "131072",
            "2048",
            "workers.fill_size",
        ),
        (
            "[workers]\nfast_path_flows",
            "0",
            "1",
            "workers.fast_path_flows",
        ),
        (
            "[workers]\nfast_path_flows",
            "16777217",
            "16777216",
            "workers.fast_path_flows",
        ),
        (
            "[workers]\nframe_count",
            "2097152",
            "1048576",
            "workers.frame_count",
        ),
        (
            "[workers]\nmax_memory_share",
            "0",
            "1",
            "workers.max_memory_share",
        ),
        (
            "[workers]\nmax_memory_share",
            "96",
            "95",
            "workers.max_memory_share",
        ),
        (
            "[workers]\npoll_timeout",
            "\"1001ms\"",
            "\"1s\"",
            "workers.poll_timeout",
        ),
        (
            "[workers]\npoll_timeout",
            "\"999us\"",
            "\"1ms\"",
            "workers.poll_timeout",
        ),
        (
            "[workers]\npublish_interval",
            "\"9ms\"",
            "\"10ms\"",
            "workers.publish_interval",
        ),
        (
            "[workers]\npublish_interval",
            "\"61m\"",
            "\"1h\"",
            "workers.publish_interval",
        ),
        (
            "[workers]\npacer_burst",
            "\"99us\"",
            "\"100us\"",
            "workers.pacer_burst",
        ),
        (
            "[workers]\npacer_burst",
            "\"101ms\"",
            "\"100ms\"",
            "workers.pacer_burst",
        ),
        (
            "[workers]\npacer_max_queue_delay",
            "\"1001ms\"",
            "\"1s\"",
            "workers.pacer_max_queue_delay",
        ),
        (
            "[classifier]\nflow_capacity",
            "16777217",
            "16777216",
            "classifier.flow_capacity",
        ),
        (
            "[classifier]\nidle_timeout",
            "\"999ms\"",
            "\"1s\"",
            "classifier.idle_timeout",
        ),
        (
            "[classifier]\nidle_timeout",
            "\"25h\"",
            "\"24h\"",
            "classifier.idle_timeout",
        ),
        (
            "[classifier]\nidle_timeout",
            "\"18446744074s\"",
            "\"1day\"",
            "classifier.idle_timeout",
        ),
        (
            "[control]\nhigh_freq_interval",
            "\"9ms\"",
            "\"10ms\"",
            "control.high_freq_interval",
        ),
        (
            "[control]\nhigh_freq_interval",
            "\"101ms\"",
            "\"100ms\"",
            "control.high_freq_interval",
        ),
        (
            "[control]\nlow_freq_interval",
            "\"61s\"",
            "\"60s\"",
            "control.low_freq_interval",
        ),
        ("[exchange]\nport", "0", "1", "exchange.port"),
        (
            "[exchange]\nfailure_timeout",
            "\"99ms\"",
            "\"100ms\"",
            "exchange.failure_timeout",
        ),
        (
            "[exchange]\nfailure_timeout",
            "\"61m\"",
            "\"1h\"",
            "exchange.failure_timeout",
        ),
        ("[exchange]\nmtu", "511", "512", "exchange.mtu"),
        ("[exchange]\nmtu", "9001", "9000", "exchange.mtu"),
        ("[deploy]\ninner_queues", "65", "64", "deploy.inner_queues"),
    ];
    // `[node]` is MIN's own section: its value is replaced, not appended.
    let with = |key: &str, v: &str| match key.strip_prefix("[node]\nid") {
        Some(_) => MIN.replace("id = 1", &format!("id = {v}")),
        None => format!("{MIN}{key} = {v}\n"),
    };
    for (key, outside, inside, field) in cases {
        match parse(&with(key, outside)) {
            Err(ConfigError::Invalid { field: f, .. }) => {
                assert_eq!(&f, field, "{key} = {outside}")
            }
            other => panic!("{key} = {outside} not refused: {other:?}"),
        }
        let ok = parse(&with(key, inside));
        assert!(ok.is_ok(), "{key} = {inside}: {:?}", ok.err());
    }
}

#[test]
fn invalid_errors_name_the_offending_line() {
    let (line, field, _) = invalid("\n[[job]]\nname = \"a\"\n\n[[job]]\nname = \"a\"\n");
    assert_eq!(field, "job[1].name");
    assert_eq!(line, 14, "the second job's name is on line 14");
    let err = parse(&format!(
        "{MIN}[[job]]\nname = \"a\"\n[[job]]\nname = \"a\"\n"
    ))
    .unwrap_err();
    assert!(
        err.to_string().starts_with("test.toml:12: job[1].name:"),
        "{err}"
    );
}

#[test]
fn bookings_beyond_capacity_and_caps_below_rate() {
    let (_, field, msg) = invalid(
        "[[pipe]]\nname = \"p\"\ncapacity = \"10Mbit\"\n[[job]]\nname = \"a\"\n[[job.booking]]\npipe = \"p\"\nrate = \"60%\"\n[[job]]\nname = \"b\"\n[[job.booking]]\npipe = \"p\"\nrate = \"5Mbit\"\n",
    );
    assert_eq!(field, "pipe[0].capacity");
    assert!(msg.contains("more than its capacity"), "{msg}");
    let (_, field, _) = invalid(
        "[[pipe]]\nname = \"p\"\ncapacity = \"10Mbit\"\n[[job]]\nname = \"a\"\n[[job.booking]]\npipe = \"p\"\nrate = \"60%\"\ncap = \"1Mbit\"\n",
    );
    assert_eq!(field, "job[0].booking[0].cap");
}

#[test]
fn rates_parse() {
    assert_eq!("100Mbit".parse::<Rate>().unwrap(), Rate::Bps(100_000_000));
    assert_eq!("1.5Gbit".parse::<Rate>().unwrap(), Rate::Bps(1_500_000_000));
    assert_eq!("500kbit".parse::<Rate>().unwrap(), Rate::Bps(500_000));
    assert_eq!("40%".parse::<Rate>().unwrap(), Rate::Percent(40.0));
    assert!("140%".parse::<Rate>().is_err());
    assert!("-3Mbit".parse::<Rate>().is_err());
    assert_eq!(Rate::Percent(25.0).bps(8_000_000), 2_000_000);
}

#[test]
fn key_file_is_checked_separately() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("pool.key");
    let file = dir.path().join("c.toml");
    let src = format!("{MIN}\n[exchange]\nkey_file = \"{}\"\n", key.display());
    std::fs::write(&file, &src).unwrap();
    // Validation does not touch the file system ...
    let cfg = Config::load(&file).expect("valid without the key present");
    // ... check_files does, and names the field and line.
    match cfg.check_files(&file) {
        Err(ConfigError::Invalid { field, line, .. }) => {
            assert_eq!(field, "exchange.key_file");
            assert_eq!(line, 11);
        }
        other => panic!("{other:?}"),
    }
    let missing = cfg.check_files(&file).unwrap_err().to_string();
    assert!(missing.contains("umask 077"), "{missing}");
    crate::write_key_file(&key, b"short").unwrap();
    assert!(cfg
        .check_files(&file)
        .unwrap_err()
        .to_string()
        .contains("fewer than 16 bytes"));
    crate::write_key_file(&key, &[7u8; 32]).unwrap();
    assert!(cfg.check_files(&file).is_ok());
    assert!(Config::load_checked(&file).is_ok());
}

#[test]
fn a_key_file_others_can_read_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("pool.key");
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        format!("{MIN}\n[exchange]\nkey_file = \"{}\"\n", key.display()),
    )
    .unwrap();
    crate::write_key_file(&key, &[7u8; 32]).unwrap();
    let mode = |m: u32| std::fs::set_permissions(&key, std::fs::Permissions::from_mode(m)).unwrap();
    // Private modes pass, whatever the owner's own bits.
    for ok in [0o600, 0o400] {
        mode(ok);
        assert!(Config::load_checked(&file).is_ok(), "{ok:o}");
    }
    // Any access for group or others is refused, naming the file, its mode
    // and the fix.
    for bad in [0o644, 0o640, 0o604, 0o620, 0o602, 0o666] {
        mode(bad);
        let e = Config::load_checked(&file).unwrap_err();
        assert_eq!(e.field(), Some("exchange.key_file"));
        let msg = e.to_string();
        let k = key.display();
        assert!(
            msg.contains(&format!("{k} has mode 0{bad:o}"))
                && msg.contains(&format!("chmod 600 {k}")),
            "{msg}"
        );
    }
}

#[test]
fn key_files_are_written_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("pool.key");
    std::fs::write(&key, b"an old world-readable key").unwrap();
    crate::write_key_file(&key, &[1u8; 32]).unwrap();
    let m = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(m & 0o777, 0o600);
    assert_eq!(std::fs::read(&key).unwrap(), [1u8; 32]);
}

#[test]
fn duplicate_and_overbooking_messages_are_specific() {
    let (_, _, msg) = invalid("[[job]]\nname = \"a\"\n[[job]]\nname = \"a\"\n");
    assert_eq!(msg, "duplicate job name \"a\" (first used by job[0])");
    let (_, _, msg) = invalid(
        "[[pipe]]\nname = \"p\"\ncapacity = \"100Mbit\"\n[[job]]\nname = \"a\"\n[[job.booking]]\npipe = \"p\"\nrate = \"40%\"\n[[job]]\nname = \"b\"\n[[job.booking]]\npipe = \"p\"\nrate = \"90Mbit\"\n",
    );
    assert!(
        msg.contains("130Mbit (a 40Mbit + b 90Mbit)") && msg.contains("capacity 100Mbit"),
        "{msg}"
    );
}

#[test]
fn peers_parse() {
    assert_eq!(crate::parse_peer("2@10.0.0.2:7946").unwrap().0, 2);
    assert!(crate::parse_peer("10.0.0.2:7946").is_err());
    assert!(crate::parse_peer("x@10.0.0.2:7946").is_err());
}

#[test]
fn the_example_policy_composes_with_the_reference_node_file() {
    let node = parse(include_str!("../headroom.toml")).unwrap();
    let policy = include_str!("../policy.toml");
    let cfg = node
        .with_policy(policy, Path::new("policy.toml"))
        .expect("config/policy.toml must be valid with config/headroom.toml");
    assert_eq!(cfg.node, node.node);
    assert_eq!(cfg.job_names(), node.job_names());
    let c = crate::ConfigChanges::between(&node, &cfg);
    assert_eq!(
        c.bookings,
        [
            "web on uplink: 40% (cap 80%) -> 60% (cap 90%)",
            "batch on uplink: 20Mbit -> 10Mbit"
        ]
    );
    // It applies live: nothing in it waits for a restart.
    assert!(c.restart_required.is_empty(), "{:?}", c.restart_required);
}
