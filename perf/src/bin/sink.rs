//! `sink`: counts generator frames on an interface or UDP socket and reports
//! loss, reordering, duplicates and latency.

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use clap::Parser;
use headroom_perf::{
    cli, signal,
    sink::{self, SinkConfig, SinkMode},
};

/// Packet sink for `pktgen` traffic.
#[derive(Debug, Parser)]
#[command(name = "sink", version = headroom_buildinfo::LONG_VERSION)]
struct Args {
    /// Interface to receive on (afxdp and xdp modes).
    #[arg(short = 'i', long)]
    dev: Option<String>,
    /// `afxdp` (AF_XDP rx, full per-frame checks), `xdp` (accounting in the
    /// XDP program, for rates above what AF_XDP copy mode takes) or `udp`.
    #[arg(short, long, value_enum, default_value = "afxdp")]
    mode: SinkMode,
    /// UDP mode: address to bind.
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// AF_XDP queue.
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// Stop after this long (seconds, or e.g. 500ms).
    #[arg(short, long, value_parser = cli::parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many valid frames.
    #[arg(short = 'n', long, default_value_t = 0)]
    count: u64,
    /// Stop when nothing arrived for this long after the first frame.
    #[arg(short, long, value_parser = cli::parse_duration)]
    quiet: Option<Duration>,
    /// xdp mode: flow ids 0..FLOWS to read back for loss accounting.
    #[arg(long, default_value_t = 65536, value_parser = clap::value_parser!(u32).range(1..=65536))]
    flows: u32,
    /// Also print the result as one JSON line.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let a = Args::parse();
    if a.mode == SinkMode::Udp && a.bind.is_none() {
        eprintln!("sink: --mode udp needs --bind ADDR:PORT");
        return ExitCode::from(2);
    }
    if a.mode != SinkMode::Udp && a.dev.is_none() {
        eprintln!("sink: --mode {:?} needs --dev", a.mode);
        return ExitCode::from(2);
    }
    if a.duration.is_none() && a.count == 0 && a.quiet.is_none() {
        eprintln!("sink: no --duration, --count or --quiet given: running until Ctrl-C");
    }
    let cfg = SinkConfig {
        dev: a.dev.unwrap_or_default(),
        mode: a.mode,
        bind: a
            .bind
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 9))),
        queue: a.queue,
        duration: a.duration,
        count: a.count,
        quiet: a.quiet,
        flows: a.flows,
    };
    signal::install();
    match sink::run(&cfg) {
        Ok(r) => {
            println!("{}", r.text());
            if a.json {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sink: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_parses() {
        Args::try_parse_from([
            "sink", "-i", "v", "-m", "xdp", "--queue", "0", "-d", "1", "-n", "5", "-q", "250ms",
            "--flows", "3", "--json",
        ])
        .expect("parses");
    }
}
