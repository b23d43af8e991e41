//! `plot`: SVG plots (zero-loss Mpps against frame size, latency at the
//! load points) from one or more bench JSON files.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::Parser;
use headroom_perf::plot::{self, Run};

/// Draws mpps-vs-size.svg and latency.svg from bench result JSON.
#[derive(Debug, Parser)]
#[command(name = "plot", version = headroom_buildinfo::LONG_VERSION)]
struct Args {
    /// bench-*.json files, or directories (all bench-*.json in them).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output directory (default: the directory of the first input).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Prefix for the SVG file names (e.g. `bench-212858-`).
    #[arg(long, default_value = "")]
    prefix: String,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // one line with the whole cause chain, no backtrace
            eprintln!("plot: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: Args) -> Result<()> {
    let files = plot::expand_inputs(&a.inputs)?;
    let mut runs = Vec::new();
    for f in &files {
        runs.push(Run::load(f)?);
    }
    let out = match a.out_dir {
        Some(d) => d,
        None => {
            let first = &a.inputs[0];
            if first.is_dir() {
                first.clone()
            } else {
                first
                    .parent()
                    .map(|p| {
                        if p.as_os_str().is_empty() {
                            PathBuf::from(".")
                        } else {
                            p.to_path_buf()
                        }
                    })
                    .unwrap_or_else(|| PathBuf::from("."))
            }
        }
    };
    std::fs::create_dir_all(&out)
        .with_context(|| format!("creating output directory {}", out.display()))?;
    let written = plot::write_plots(&out, &a.prefix, &runs)
        .with_context(|| format!("plotting {} file(s)", files.len()))?;
    for w in written {
        println!("{}", w.display());
    }
    Ok(())
}
