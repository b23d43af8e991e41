//! `xdpfwd`: baseline forwarders between two interfaces. Default: raw
//! AF_XDP L2 forwarder; `--devmap`: load `bpf/redirect.bpf.c` (XDP_REDIRECT
//! via devmap) on both interfaces and keep it attached until stopped.

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use headroom_perf::{bpf::RedirectPair, cli, netdev, signal, xdpfwd};

/// Baseline forwarder between two interfaces (run inside their namespace).
#[derive(Debug, Parser)]
#[command(name = "xdpfwd", version = headroom_buildinfo::LONG_VERSION)]
struct Args {
    /// First interface.
    #[arg(short = 'a', long)]
    dev_a: String,
    /// Second interface.
    #[arg(short = 'b', long)]
    dev_b: String,
    /// XDP_REDIRECT via devmap instead of AF_XDP.
    #[arg(long)]
    devmap: bool,
    /// Stop after this long (default: until SIGINT/SIGTERM).
    #[arg(short, long, value_parser = cli::parse_duration)]
    duration: Option<Duration>,
    /// Print counters as JSON on exit.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let a = Args::parse();
    signal::install();
    if a.devmap {
        let (ia, ib) = match (netdev::ifindex(&a.dev_a), netdev::ifindex(&a.dev_b)) {
            (Ok(x), Ok(y)) => (x, y),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("xdpfwd: {e}");
                return ExitCode::from(1);
            }
        };
        let pair = match RedirectPair::attach(ia, ib) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("xdpfwd: {e}");
                return ExitCode::from(1);
            }
        };
        eprintln!("xdpfwd: ready, XDP_REDIRECT {} <-> {}", a.dev_a, a.dev_b);
        let start = std::time::Instant::now();
        loop {
            if signal::stopped() || a.duration.is_some_and(|d| start.elapsed() >= d) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(pair);
        return ExitCode::SUCCESS;
    }
    match xdpfwd::run(&a.dev_a, &a.dev_b, a.duration) {
        Ok(st) => {
            println!(
                "xdpfwd: {} a->b, {} b->a, {} dropped (tx ring full) in {} us",
                st.a_to_b, st.b_to_a, st.tx_full_drops, st.elapsed_us
            );
            for x in &st.sockets {
                println!(
                    "  {}: rx_dropped {} rx_ring_full {} fill_ring_empty {} tx_invalid {}",
                    x.dev, x.rx_dropped, x.rx_ring_full, x.rx_fill_ring_empty, x.tx_invalid
                );
            }
            if a.json {
                println!("{}", serde_json::to_string(&st).unwrap_or_default());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xdpfwd: {e}");
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
            "xdpfwd", "-a", "x", "-b", "y", "--devmap", "-d", "1", "--json",
        ])
        .expect("parses");
    }
}
