//! The Debian package, built by `scripts/package.sh` as a release would be,
//! installed into a throwaway root (`dpkg --root`, maintainer scripts run
//! chrootless with DPKG_ROOT set) so this machine's own package state is
//! untouched: its files, conffile, man pages and unit; the installed
//! headroomd started in a lab namespace and queried with the installed
//! headroomctl; remove keeps the configuration, purge takes everything.
//!
//! Builds the release binaries (the first time: minutes) and needs
//! cargo-deb, dpkg, man-db and systemd-analyze (`scripts/install-deps.sh`).

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use common::*;
use headroom_lab::Lab;

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// dpkg acting on the throwaway root `root`.
fn dpkg(root: &Path, args: &[&str]) -> Output {
    Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-script-chrootless", "--log=/dev/null"])
        .args(args)
        .output()
        .expect("run dpkg")
}

/// A dpkg database holding only the packages `deb` depends on, as this
/// machine has them installed: dpkg checks the dependencies against what is
/// really here (and the installed binaries run with these libraries).
fn throwaway_root(root: &Path, deb: &Path) {
    let db = root.join("var/lib/dpkg");
    for d in ["info", "updates", "triggers"] {
        std::fs::create_dir_all(db.join(d)).unwrap();
    }
    let depends = ok(
        Command::new("dpkg-deb")
            .arg("-f")
            .arg(deb)
            .arg("Depends")
            .output()
            .unwrap(),
        "dpkg-deb -f Depends",
    );
    let mut status = String::new();
    for dep in depends.split(',') {
        let name = dep.split_whitespace().next().expect("a package name");
        let entry = ok(
            Command::new("dpkg-query")
                .args(["-s", name])
                .output()
                .unwrap(),
            &format!("dependency {name} installed on this machine"),
        );
        status.push_str(entry.trim_end());
        status.push_str("\n\n");
        let arch = entry
            .lines()
            .find_map(|l| l.strip_prefix("Architecture: "))
            .unwrap_or("all");
        let list = if arch == "all" {
            name.to_string()
        } else {
            format!("{name}:{arch}")
        };
        std::fs::write(db.join("info").join(format!("{list}.list")), "").unwrap();
    }
    std::fs::write(db.join("status"), status).unwrap();
    std::fs::write(db.join("available"), "").unwrap();
}

#[test]
fn the_package_installs_runs_and_purges() {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = TempDir::new("hr-package");
    let built = ok(
        Command::new(ws.join("scripts/package.sh"))
            .arg(dir.path("debs"))
            .current_dir(ws)
            .output()
            .unwrap(),
        "scripts/package.sh",
    );
    let deb = PathBuf::from(built.lines().last().expect("package.sh names the .deb"));
    assert!(deb.exists(), "{built}");
    let root = dir.path("root");
    throwaway_root(&root, &deb);

    // Install.
    let out = ok(dpkg(&root, &["-i", deb.to_str().unwrap()]), "dpkg -i");
    assert!(out.contains("systemctl enable --now headroomd"), "{out}");
    let st = ok(dpkg(&root, &["-s", "headroom"]), "dpkg -s");
    assert!(st.contains("Status: install ok installed"), "{st}");
    let r = |p: &str| root.join(p.trim_start_matches('/'));
    for f in [
        "usr/sbin/headroomd",
        "usr/bin/headroomctl",
        "etc/headroom/headroom.toml",
        "lib/systemd/system/headroomd.service",
        "usr/share/man/man8/headroomd.8.gz",
        "usr/share/man/man8/headroomctl.8.gz",
        "usr/share/man/man8/headroomctl-reload.8.gz",
        "usr/share/bash-completion/completions/headroomctl",
        "usr/share/zsh/vendor-completions/_headroomd",
        "usr/share/fish/vendor_completions.d/headroomctl.fish",
        "usr/share/doc/headroom/operations.md",
    ] {
        assert!(r(f).exists(), "{f} not installed");
    }
    let conffiles = std::fs::read_to_string(r("var/lib/dpkg/info/headroom.conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/headroom/headroom.toml");
    // The shipped configuration is the reference: identical, and valid.
    assert_eq!(
        std::fs::read_to_string(r("etc/headroom/headroom.toml")).unwrap(),
        include_str!("../config/headroom.toml")
    );

    // The installed binaries are this build, and say so.
    let v = ok(
        Command::new(r("usr/sbin/headroomd"))
            .arg("--version")
            .output()
            .unwrap(),
        "headroomd --version",
    );
    assert_eq!(
        v.trim(),
        format!("headroomd {}", headroom_buildinfo::LONG_VERSION)
    );
    let key = dir.path("pool.key");
    headroom_config::write_key_file(&key, &[5u8; 32]).unwrap();
    let reference = dir.path("reference.toml");
    std::fs::write(
        &reference,
        std::fs::read_to_string(r("etc/headroom/headroom.toml"))
            .unwrap()
            .replace("/etc/headroom/pool.key", key.to_str().unwrap()),
    )
    .unwrap();
    let checked = ok(
        Command::new(r("usr/sbin/headroomd"))
            .arg("--check-config")
            .arg(&reference)
            .output()
            .unwrap(),
        "headroomd --check-config (reference)",
    );
    assert!(
        checked.contains("OK (node 1, 2 jobs, 1 pipes)"),
        "{checked}"
    );

    // `man headroomd` from the installed pages.
    let page = ok(
        Command::new("man")
            .arg("-M")
            .arg(r("usr/share/man"))
            .args(["-P", "cat", "headroomd"])
            .env("MANWIDTH", "100")
            .env("LANG", "C")
            .output()
            .unwrap(),
        "man -M ... headroomd",
    );
    for s in [
        "--log-format",
        "HEADROOM_LOG",
        "ENVIRONMENT",
        "/etc/headroom/headroom.toml",
    ] {
        assert!(page.contains(s), "{s} not in the man page:\n{page}");
    }

    // The installed unit passes systemd's own checks without a word: its
    // commands (pointed at the throwaway root) exist and its man: pages are
    // the installed ones. (verify exits 0 on ignored lines, so its output
    // must be empty.)
    let unit = std::fs::read_to_string(r("lib/systemd/system/headroomd.service"))
        .unwrap()
        .replace(
            "/usr/sbin/headroomd",
            r("usr/sbin/headroomd").to_str().unwrap(),
        )
        .replace(
            "/usr/bin/headroomctl",
            r("usr/bin/headroomctl").to_str().unwrap(),
        );
    std::fs::create_dir_all(dir.path("unit")).unwrap();
    let unit_path = dir.path("unit").join("headroomd.service");
    std::fs::write(&unit_path, unit).unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit_path)
        .env("MANPATH", r("usr/share/man"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );

    // Start the installed daemon in a lab namespace, ask the installed
    // headroomctl, stop.
    let mut lab = Lab::up(1, 0).expect("lab");
    let s = lab.servers[0].clone();
    let sock = dir.path(&format!("s{}.sock", s.id));
    let socket = lab
        .start_headroomd(
            &r("usr/sbin/headroomd"),
            0,
            &dir.0,
            &server_config(&s, &sock, ""),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let status_text = ok(
        Command::new(r("usr/bin/headroomctl"))
            .arg("--socket")
            .arg(&socket)
            .arg("status")
            .output()
            .unwrap(),
        "headroomctl status",
    );
    assert!(status_text.starts_with("node 1 (node-1)"), "{status_text}");
    assert!(
        status_text.contains(&format!("interface {} (outer, ", headroom_lab::NIC)),
        "{status_text}"
    );
    let name = format!("headroomd-{}", s.id);
    let pid = lab.child(&name).unwrap().id();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = lab.child(&name).unwrap().wait().unwrap();
    assert!(st.success(), "headroomd exited {st}");
    drop(lab);

    // Remove keeps the configuration; purge takes it.
    ok(dpkg(&root, &["-r", "headroom"]), "dpkg -r");
    assert!(!r("usr/sbin/headroomd").exists());
    assert!(
        r("etc/headroom/headroom.toml").exists(),
        "remove took the conffile"
    );
    ok(dpkg(&root, &["-P", "headroom"]), "dpkg -P");
    for f in [
        "etc/headroom",
        "lib/systemd/system/headroomd.service",
        "usr/share/man/man8/headroomd.8.gz",
    ] {
        assert!(!r(f).exists(), "{f} left after purge");
    }
    let st = dpkg(&root, &["-s", "headroom"]);
    assert!(!st.status.success(), "still known after purge");
}
