//! Every perf tool's `--version` names the commit it was built from, like
//! the daemon's (results are only comparable knowing what was measured).

use std::process::Command;

#[test]
fn every_tool_names_its_commit() {
    for (name, bin) in [
        ("bench", env!("CARGO_BIN_EXE_bench")),
        ("pktgen", env!("CARGO_BIN_EXE_pktgen")),
        ("plot", env!("CARGO_BIN_EXE_plot")),
        ("sink", env!("CARGO_BIN_EXE_sink")),
        ("xdpfwd", env!("CARGO_BIN_EXE_xdpfwd")),
    ] {
        let out = Command::new(bin).arg("--version").output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{name} {}", headroom_buildinfo::LONG_VERSION)
        );
    }
}
