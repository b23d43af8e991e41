//! `slowhttp`: an HTTP server that answers after a known delay, and a client
//! that times its own requests (the reference for the passive response-time
//! measurement; see `headroom_perf::slowhttp`).
//!
//! ```text
//! slowhttp serve --listen 10.200.1.1:8080 --delay 20ms      # until killed
//! slowhttp get --to 10.200.1.1:8080 -n 500 --keep-alive     # prints JSON
//! ```

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use headroom_perf::{
    cli,
    slowhttp::{get_many, median, Connections, SlowServer},
};

#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve until killed, answering each request after --delay.
    Serve {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Time slept per request (e.g. 20ms).
        #[arg(long, value_parser = cli::parse_duration)]
        delay: Duration,
    },
    /// Send requests one after another; print their times as JSON.
    Get {
        /// Server address.
        #[arg(long)]
        to: SocketAddr,
        /// Requests.
        #[arg(short, default_value_t = 100)]
        n: usize,
        /// All requests on one keep-alive connection (default: one each).
        #[arg(long)]
        keep_alive: bool,
        /// Per-operation timeout.
        #[arg(long, value_parser = cli::parse_duration, default_value = "5s")]
        timeout: Duration,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.cmd {
        Cmd::Serve { listen, delay } => match SlowServer::start(listen, delay) {
            Ok(s) => {
                eprintln!(
                    "slowhttp: serving on {} with {delay:?} per request",
                    s.addr()
                );
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            Err(e) => {
                eprintln!("slowhttp: cannot listen on {listen}: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Get {
            to,
            n,
            keep_alive,
            timeout,
        } => {
            let how = if keep_alive {
                Connections::KeepAlive
            } else {
                Connections::PerRequest
            };
            match get_many(to, n, how, timeout) {
                Ok(t) => {
                    let mut s = t.clone();
                    s.sort_unstable();
                    let us = |d: Option<&Duration>| d.map_or(0, |d| d.as_micros());
                    let mean = t
                        .iter()
                        .sum::<Duration>()
                        .checked_div(t.len() as u32)
                        .unwrap_or_default();
                    println!(
                        "{{\"count\":{},\"median_us\":{},\"p90_us\":{},\"mean_us\":{}}}",
                        t.len(),
                        us(median(&t).as_ref()),
                        us(s.get(s.len() * 9 / 10)),
                        mean.as_micros()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("slowhttp: requests to {to} failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
