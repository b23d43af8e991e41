//! The binaries' command lines as an operator meets them, without a lab:
//! `--version` with the commit, errors said once, a readable pool key
//! refused at `--check-config` and at start, JSON log lines.

mod common;

use std::{os::unix::fs::PermissionsExt, process::Command};

use common::{TempDir, HEADROOMD};

const BINARIES: &[&str] = &[
    env!("CARGO_BIN_EXE_headroomd"),
    env!("CARGO_BIN_EXE_headroomctl"),
    env!("CARGO_BIN_EXE_headroom-docgen"),
];

fn run(args: &[&str]) -> std::process::Output {
    Command::new(HEADROOMD)
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .expect("run headroomd")
}

#[test]
fn version_names_the_commit() {
    // The commit of this checkout, or "unknown" in a tree without git
    // (a source tarball); the build script's own tests cover that case.
    let head = Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short=12",
            "HEAD",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    for bin in BINARIES {
        let out = Command::new(bin).arg("--version").output().unwrap();
        let v = String::from_utf8_lossy(&out.stdout);
        let name = std::path::Path::new(bin)
            .file_name()
            .unwrap()
            .to_string_lossy();
        assert_eq!(
            v.trim(),
            format!(
                "{name} {} (commit {})",
                env!("CARGO_PKG_VERSION"),
                headroom_buildinfo::COMMIT
            )
        );
        if let Some(h) = &head {
            assert_eq!(headroom_buildinfo::COMMIT, h, "rebuild after committing");
        }
    }
}

#[test]
fn a_missing_config_says_its_cause_once() {
    let out = run(&["--config", "/nonexistent/headroom.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(
        err.contains("headroomd: /nonexistent/headroom.toml: cannot read"),
        "{err}"
    );
}

#[test]
fn a_pool_key_others_can_read_is_refused_at_check_and_start() {
    let dir = TempDir::new("hr-cli-key");
    let key = dir.path("pool.key");
    headroom_config::write_key_file(&key, &[9u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = dir.path("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[node]\nid = 1\naddress = \"10.0.0.1\"\n[interfaces]\nouter = \"nosuch0\"\ninner = \"nosuch1\"\n\
             [control]\nsocket = \"{}\"\n[exchange]\nkey_file = \"{}\"\n",
            dir.path("s.sock").display(),
            key.display()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let expect = |out: std::process::Output, code: i32| {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{err}");
        assert!(
            err.contains(&format!("{} has mode 0644", key.display()))
                && err.contains(&format!("chmod 600 {}", key.display()))
                && err.contains("exchange.key_file"),
            "{err}"
        );
    };
    expect(run(&["--check-config", cfg]), 2);
    // At start the key is checked before anything is attached (the
    // interfaces do not even exist).
    expect(run(&["--config", cfg]), 1);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(&["--check-config", cfg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let out = run(&[
        "--log-format",
        "json",
        "--config",
        "/nonexistent/headroom.toml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert_eq!(lines[0]["fields"]["message"], "headroomd starting");
    assert_eq!(lines[0]["fields"]["commit"], headroom_buildinfo::COMMIT);
    assert_eq!(lines[1]["level"], "ERROR");
    assert!(lines[1]["fields"]["error"]
        .as_str()
        .unwrap()
        .contains("cannot read"));
}

#[test]
fn a_bad_log_filter_is_reported_not_ignored() {
    let out = Command::new(HEADROOMD)
        .args(["--config", "/nonexistent/x.toml"])
        .env("HEADROOM_LOG", "info,=bogus==")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HEADROOM_LOG is not a valid log filter"),
        "{err}"
    );
}

#[test]
fn a_config_valid_elsewhere_is_reported_and_refused_at_start_here() {
    let dir = TempDir::new("hr-cli-machine");
    let cfg = dir.path("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[node]\nid = 1\naddress = \"10.0.0.1\"\n[interfaces]\nouter = \"lo\"\ninner = \"hr-nosuch9\"\n\
             [workers]\ncores = [4095]\n[control]\nsocket = \"{}\"\n",
            dir.path("s.sock").display()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let out = run(&["--check-config", cfg]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
    assert!(
        err.contains("valid, but on this machine")
            && err.contains(":6: interfaces.inner: no interface \"hr-nosuch9\"")
            && err.contains(":8: workers.cores[0]: core 4095 is not online"),
        "{err}"
    );
    // At start: refused with the same lines, before anything is touched.
    let out = run(&["--config", cfg]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("interfaces.inner: no interface") && err.contains("core 4095"),
        "{err}"
    );
    assert!(!dir.path("s.sock").exists());
}

#[test]
fn a_dataplane_bigger_than_its_share_of_ram_is_refused_before_attach() {
    let dir = TempDir::new("hr-cli-memory");
    let cfg = dir.path("c.toml");
    // 1 Mi frames of 4 KiB for the one queue of lo: 4 GiB of UMEM, more
    // than 5% of any machine this runs on (the test says so otherwise).
    let ram_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap();
    assert!(
        ram_kb * 1024 / 20 < 4 << 30,
        "this machine has {ram_kb} kB: 5% of it holds 4 GiB of UMEM"
    );
    let write = |frames: u32| {
        std::fs::write(
            &cfg,
            format!(
                "[node]\nid = 1\naddress = \"10.0.0.1\"\n[interfaces]\nouter = \"lo\"\ninner = \"hr-nosuch9\"\n\
                 [workers]\ncores = [0]\nframe_count = {frames}\nmax_memory_share = 5\n\
                 [control]\nsocket = \"{}\"\n",
                dir.path("s.sock").display()
            ),
        )
        .unwrap()
    };
    write(1 << 20);
    let path = cfg.to_str().unwrap();
    let out = run(&["--check-config", path]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let memory = ":9: workers.frame_count: the dataplane would allocate 4.0 GiB at start, \
                  more than max_memory_share = 5% of this machine's";
    assert!(
        err.contains("valid, but on this machine headroomd would not start:")
            && err.contains(memory)
            && err.contains(
                "UMEM 4.0 GiB (workers.frame_size 4096 B x workers.frame_count 1048576 \
                 x 1 served queue(s) over 1 worker(s))"
            )
            && err.contains("Lower workers.frame_count first"),
        "{err}"
    );
    // At start: the same message, before anything is attached.
    let out = run(&["--config", path]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(memory), "{err}");
    assert!(!dir.path("s.sock").exists());
    // The default frame count fits: only the missing interface is left.
    write(8192);
    let out = run(&["--check-config", path]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("interfaces.inner") && !err.contains("would allocate"),
        "{err}"
    );
}
