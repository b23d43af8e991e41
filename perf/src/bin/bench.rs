//! `bench`: runs scenarios (DUT kind x frame size x flows) in a fresh
//! generator/DUT/sink namespace topology each and writes a Markdown table
//! and JSON under perf/results/<date>/.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use headroom_perf::{
    bench::{self, BenchConfig, DutKind},
    cli,
    packet::{MAX_FRAME, MIN_FRAME},
    pktgen::Engine,
    plot,
    sink::SinkMode,
    topo::Placement,
};

/// Zero-loss throughput, latency and CPU-per-packet benchmark runner.
#[derive(Debug, Parser)]
#[command(name = "bench", version = headroom_buildinfo::LONG_VERSION)]
struct Args {
    /// DUT kinds (comma separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["xdpfwd", "redirect", "bridge", "kernel-fwd"])]
    dut: Vec<DutKind>,
    /// Frame sizes without FCS (comma separated).
    #[arg(long, value_delimiter = ',', default_values = ["60"])]
    size: Vec<usize>,
    /// Flow counts (comma separated).
    #[arg(long, value_delimiter = ',', default_values = ["1"])]
    flows: Vec<u32>,
    /// Placement: `a` (DUT alone on core 1, NAPI threaded and pinned) or `b` (default veth).
    #[arg(long, value_enum, default_value = "b")]
    placement: Placement,
    /// Trial length (seconds or e.g. 500ms).
    #[arg(long, default_value = "10", value_parser = cli::parse_duration)]
    trial: Duration,
    /// Search resolution: stop when (hi - lo) / hi is below this.
    #[arg(long, default_value_t = 0.02)]
    resolution: f64,
    /// Maximum binary-search steps after the max-rate trial.
    #[arg(long, default_value_t = 10)]
    max_steps: u32,
    /// Loss ratio still counted as zero loss (e.g. 0.0001).
    #[arg(long, default_value_t = 0.0)]
    loss_tolerance: f64,
    /// Generator engine.
    #[arg(long, value_enum, default_value = "live")]
    engine: Engine,
    /// Sink mode (`xdp` counts in the kernel and keeps up with any DUT here).
    #[arg(long, value_enum, default_value = "xdp")]
    sink_mode: SinkMode,
    /// headroomd binary (DUT kind `headroomd`).
    #[arg(long)]
    headroomd_bin: Option<PathBuf>,
    /// headroomd configuration template; {{DUT_IN}}, {{DUT_OUT}}, {{DUT_IN_MAC}},
    /// {{DUT_OUT_MAC}}, {{GEN_MAC}}, {{SINK_MAC}}, {{GEN_IP}}, {{SINK_IP}} are substituted.
    #[arg(long)]
    headroomd_config: Option<PathBuf>,
    /// headroomd routes (generator sends to the DUT's MAC) instead of bridging.
    #[arg(long)]
    headroomd_l3: bool,
    /// How long to wait for a DUT to print "ready".
    #[arg(long, default_value = "5", value_parser = cli::parse_duration)]
    dut_ready_timeout: Duration,
    /// Directory holding pktgen, sink and xdpfwd (default: this binary's).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Results directory (a <date> subdirectory is created).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    out: PathBuf,
    /// Free-form configuration label, stored in the JSON and appended to the
    /// series names in the plots (e.g. "quiet machine", "l3").
    #[arg(long)]
    label: Option<String>,
    /// CI smoke run: 250 ms trials, 2 search steps, one latency point, no
    /// retries, no thresholds.
    #[arg(long)]
    smoke: bool,
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn main() -> ExitCode {
    let a = Args::parse();
    if let Some(s) = a.size.iter().find(|s| **s < MIN_FRAME || **s > MAX_FRAME) {
        eprintln!("bench: --size {s} out of range {MIN_FRAME}..={MAX_FRAME}");
        return ExitCode::from(2);
    }
    if let Some(f) = a.flows.iter().find(|f| **f == 0 || **f > 65536) {
        eprintln!("bench: --flows {f} out of range 1..=65536");
        return ExitCode::from(2);
    }
    if !(0.0..1.0).contains(&a.resolution) || !(0.0..1.0).contains(&a.loss_tolerance) {
        eprintln!("bench: --resolution and --loss-tolerance must be in [0, 1)");
        return ExitCode::from(2);
    }
    if a.dut.contains(&DutKind::Headroomd)
        && (a.headroomd_bin.is_none() || a.headroomd_config.is_none())
    {
        eprintln!(
            "bench: the headroomd DUT needs --headroomd-bin PATH and --headroomd-config FILE"
        );
        return ExitCode::from(2);
    }
    let bin_dir = match a.bin_dir.clone().or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
    }) {
        Some(d) => d,
        None => {
            eprintln!("bench: cannot find the tool directory; pass --bin-dir");
            return ExitCode::from(2);
        }
    };
    for tool in ["pktgen", "sink", "xdpfwd"] {
        if !bin_dir.join(tool).exists() {
            eprintln!("bench: {} not found (build with `cargo build --release -p headroom-perf` or pass --bin-dir)", bin_dir.join(tool).display());
            return ExitCode::from(2);
        }
    }
    let cfg = BenchConfig {
        bin_dir,
        placement: a.placement,
        trial: if a.smoke {
            Duration::from_millis(250)
        } else {
            a.trial
        },
        resolution: if a.smoke { 0.25 } else { a.resolution },
        max_steps: if a.smoke { 2 } else { a.max_steps },
        loss_tolerance: a.loss_tolerance,
        engine: a.engine,
        sink_mode: a.sink_mode,
        latency_points: if a.smoke {
            vec![0.5]
        } else {
            vec![0.1, 0.5, 0.9]
        },
        headroomd_bin: a.headroomd_bin.clone(),
        headroomd_config: a.headroomd_config.clone(),
        headroomd_l3: a.headroomd_l3,
        dut_ready_timeout: a.dut_ready_timeout,
        retry_short: !a.smoke,
    };
    let command: Vec<String> = std::env::args().map(|s| shell_quote(&s)).collect();
    let command = command.join(" ");
    headroom_perf::signal::install();
    for ns in headroom_perf::topo::cleanup_stale() {
        eprintln!("bench: removed namespace {ns} left by a dead run");
    }
    let mut results = Vec::new();
    let mut failures = Vec::new();
    let mut idx = 0;
    'outer: for &dut in &a.dut {
        for &size in &a.size {
            for &flows in &a.flows {
                if headroom_perf::signal::stopped() {
                    break 'outer;
                }
                eprintln!(
                    "bench: scenario {dut:?} size {size} flows {flows} placement {:?}",
                    a.placement
                );
                match bench::run_scenario(&cfg, idx, dut, size, flows) {
                    Ok(r) => results.push(r),
                    Err(e) => {
                        eprintln!("bench: {dut:?} {size}B {flows} flows failed: {e}");
                        failures.push(format!("{dut:?} {size}B {flows} flows: {e}"));
                    }
                }
                idx += 1;
            }
        }
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let md = bench::markdown(&command, &kernel, &results, &failures);
    println!("{md}");
    let (date, time) = bench::utc_stamp();
    let dir = a.out.join(&date);
    let mut json = serde_json::json!({
        "command": command,
        "kernel": kernel,
        "date": date,
        "time_utc": time,
        "smoke": a.smoke,
        "trial_s": cfg.trial.as_secs_f64(),
        "engine": cfg.engine,
        "sink_mode": cfg.sink_mode,
        "results": results,
        "failures": failures,
    });
    if let Some(l) = &a.label {
        json["label"] = serde_json::Value::from(l.as_str());
    }
    let stem = if a.smoke {
        format!("smoke-{time}")
    } else {
        format!("bench-{time}")
    };
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{stem}.md")), &md)?;
        std::fs::write(
            dir.join(format!("{stem}.json")),
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        )?;
        Ok(())
    };
    if let Err(e) = write() {
        eprintln!("bench: writing results to {}: {e}", dir.display());
        return ExitCode::from(1);
    }
    eprintln!("bench: wrote {}/{stem}.md and .json", dir.display());
    let mut plots_ok = true;
    if !a.smoke && !results.is_empty() {
        match plot::Run::from_value(json)
            .and_then(|run| plot::write_plots(&dir, &format!("{stem}-"), &[run]))
        {
            Ok(paths) => {
                for p in paths {
                    eprintln!("bench: wrote {}", p.display());
                }
            }
            Err(e) => {
                eprintln!("bench: plotting: {e}");
                plots_ok = false;
            }
        }
    }
    if failures.is_empty() && plots_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_parses() {
        Args::try_parse_from([
            "bench",
            "--dut",
            "xdpfwd,bridge",
            "--size",
            "60,1514",
            "--flows",
            "1,100",
            "--placement",
            "a",
            "--trial",
            "2",
            "--resolution",
            "0.05",
            "--max-steps",
            "3",
            "--loss-tolerance",
            "0.001",
            "--engine",
            "afxdp",
            "--sink-mode",
            "afxdp",
            "--headroomd-bin",
            "/bin/true",
            "--headroomd-config",
            "c",
            "--headroomd-l3",
            "--dut-ready-timeout",
            "1",
            "--bin-dir",
            "/tmp",
            "--out",
            "/tmp",
            "--label",
            "quiet machine",
            "--smoke",
        ])
        .expect("parses");
    }
}
