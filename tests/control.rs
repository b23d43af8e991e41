//! The control socket as local users meet it: with `[control] group`, the
//! group's members read the status but cannot reload; others cannot
//! connect; root can do both.

mod common;

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    process::{Command, Output},
};

use common::*;
use headroom_lab::Lab;

/// Debian's unprivileged user and group.
const NOBODY: u32 = 65534;
const NOGROUP: &str = "nogroup";

fn ctl(
    bin: &std::path::Path,
    socket: &std::path::Path,
    cmd: &str,
    ids: Option<(u32, u32)>,
) -> Output {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(bin);
    c.args(["--socket", &socket.display().to_string(), cmd]);
    if let Some((uid, gid)) = ids {
        // As root, std drops the supplementary groups before setuid.
        c.uid(uid).gid(gid);
    }
    c.output().expect("run headroomctl")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_control_group_reads_but_only_root_reloads() {
    let gid = nix::unistd::Group::from_name(NOGROUP)
        .expect("group lookup")
        .unwrap_or_else(|| panic!("needs the group {NOGROUP}"))
        .gid
        .as_raw();
    let mut lab = Lab::up(1, 0).expect("lab");
    let dir = TempDir::new(&format!("{}-control", lab.tag));
    // The unprivileged callers must reach the socket and run the client.
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path("headroomctl");
    std::fs::copy(env!("CARGO_BIN_EXE_headroomctl"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = lab.servers[0].clone();
    let socket = dir.path(&format!("s{}.sock", s.id));
    let cfg = server_config(&s, &socket, &format!("[control]\ngroup = \"{NOGROUP}\"\n"));
    start_headroomd(&mut lab, &dir, 0, &cfg);

    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660, "socket mode");
    assert_eq!(meta.gid(), gid, "socket group");

    // A member of the group: status yes, reload no.
    let member = Some((NOBODY, gid));
    let st = ctl(&bin, &socket, "status", member);
    assert!(st.status.success(), "{}", text(&st));
    assert!(
        String::from_utf8_lossy(&st.stdout).contains("node"),
        "{}",
        text(&st)
    );
    let re = ctl(&bin, &socket, "reload", member);
    assert!(!re.status.success(), "{}", text(&re));
    assert!(
        String::from_utf8_lossy(&re.stderr).contains("run it as root"),
        "{}",
        text(&re)
    );
    // Not in the group: no connection at all.
    let other = ctl(&bin, &socket, "status", Some((NOBODY, gid - 1)));
    assert!(!other.status.success(), "{}", text(&other));
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("ermission denied"),
        "{}",
        text(&other)
    );
    // `headroomctl status | head -0`: a closed pipe ends it quietly.
    let mut child = Command::new(&bin)
        .args(["--socket", &socket.display().to_string(), "status"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{}", text(&out));
    }
    assert!(out.stderr.is_empty(), "{}", text(&out));
    // Root: both.
    let re = ctl(&bin, &socket, "reload", None);
    assert!(re.status.success(), "{}", text(&re));
    let st = ctl(&bin, &socket, "status", None);
    assert!(st.status.success(), "{}", text(&st));
}

#[test]
fn an_unknown_control_group_is_refused_at_check_and_start() {
    let dir = TempDir::new("hr-control-group");
    let cfg = dir.path("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[node]\nid = 1\naddress = \"10.0.0.1\"\n[interfaces]\nouter = \"nosuch0\"\ninner = \"nosuch1\"\n\
             [control]\nsocket = \"{}\"\ngroup = \"no-such-group-hr\"\n",
            dir.path("s.sock").display()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    for (args, code) in [(vec!["--check-config", cfg], 2), (vec!["--config", cfg], 1)] {
        let out = Command::new(HEADROOMD)
            .args(&args)
            .env_remove("NOTIFY_SOCKET")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(
            err.contains("control.group") && err.contains("no group \"no-such-group-hr\""),
            "{args:?}: {err}"
        );
    }
}
