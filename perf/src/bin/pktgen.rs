//! `pktgen`: AF_XDP / XDP live-frames packet generator with Linux pktgen's
//! parameters and result line.

use std::{net::Ipv4Addr, process::ExitCode, time::Duration};

use clap::Parser;
use headroom_perf::{
    cli, netdev,
    packet::{TemplateSpec, L4, MAX_FRAME},
    pktgen::{self, Engine, GenConfig},
    signal,
};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Proto {
    /// UDP datagrams.
    Udp,
    /// TCP SYN segments.
    TcpSyn,
    /// TCP ACK|PSH segments of an established flow.
    TcpAck,
}

/// Packet generator: transmits measurement frames (magic, flow id, sequence
/// number, CLOCK_MONOTONIC send time) on DEV, in the current network
/// namespace (use `ip netns exec NS pktgen ...`).
#[derive(Debug, Parser)]
#[command(name = "pktgen", version = headroom_buildinfo::LONG_VERSION)]
struct Args {
    /// Device to transmit on.
    #[arg(short = 'i', long)]
    dev: String,
    /// Engine: `live` (XDP live frames, fastest) or `afxdp` (AF_XDP copy mode).
    #[arg(short, long, value_enum, default_value = "live")]
    engine: Engine,
    /// Frame size in bytes without FCS (pktgen's pkt_size; 60 = 64 on the
    /// wire). Default: the smallest frame the protocol fits (UDP 60, TCP 70).
    #[arg(short, long)]
    size: Option<usize>,
    /// Frames to send (0: until --duration or Ctrl-C).
    #[arg(short = 'n', long, default_value_t = 0)]
    count: u64,
    /// Run time (seconds, or e.g. 500ms).
    #[arg(short, long, value_parser = cli::parse_duration)]
    duration: Option<Duration>,
    /// Rate limit in packets per second over all threads (0: none).
    #[arg(short, long, default_value_t = 0)]
    rate: u64,
    /// Frames per AF_XDP batch / live-frames kernel batch (max 256).
    #[arg(short, long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=2048))]
    burst: u32,
    /// Destination MAC (default broadcast; use the receiver's MAC for traffic a host stack must accept).
    #[arg(long, value_parser = cli::parse_mac)]
    dst_mac: Option<[u8; 6]>,
    /// Source MAC (default: the device's).
    #[arg(long, value_parser = cli::parse_mac)]
    src_mac: Option<[u8; 6]>,
    /// Destination IPv4 address.
    #[arg(long, default_value = "198.18.1.1")]
    dst_ip: Ipv4Addr,
    /// Destination port.
    #[arg(long, default_value_t = 9)]
    dst_port: u16,
    /// Source IPv4 address or range A-B.
    #[arg(long, default_value = "198.18.0.1", value_parser = cli::parse_ip_range)]
    src_ip: (Ipv4Addr, u32),
    /// Source port or range P-Q (flows = addresses x ports).
    #[arg(long, default_value = "1024", value_parser = cli::parse_port_range)]
    src_port: (u16, u32),
    /// Number of flows: shorthand for a source port range starting at --src-port.
    #[arg(short, long, value_parser = clap::value_parser!(u32).range(1..=65536))]
    flows: Option<u32>,
    /// Protocol.
    #[arg(short, long, value_enum, default_value = "udp")]
    proto: Proto,
    /// Generator threads.
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
    /// CPUs to pin the threads to, e.g. 0 or 0,1.
    #[arg(long, value_parser = cli::parse_cpu_list)]
    cpus: Option<cli::CpuList>,
    /// First AF_XDP queue (thread i uses queue+i).
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// Live frames: XDP_REDIRECT to this device instead of XDP_TX out of --dev.
    #[arg(long)]
    redirect_dev: Option<String>,
    /// Live frames: program runs per BPF_PROG_RUN call (0: automatic, ~100 ms
    /// per call; the XDP program paces itself within a call).
    #[arg(long, default_value_t = 0)]
    chunk: u64,
    /// Live frames with --rate: sending time lost to preemption or between
    /// calls that may be caught up by sending back to back (bounds bursts).
    #[arg(long, default_value = "10ms", value_parser = cli::parse_duration)]
    catch_up: Duration,
    /// Also print the result as one JSON line.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let l4 = match a.proto {
        Proto::Udp => L4::Udp,
        Proto::TcpSyn => L4::TcpSyn,
        Proto::TcpAck => L4::TcpAck,
    };
    let size = a.size.unwrap_or(l4.min_frame());
    if size < l4.min_frame() || size > MAX_FRAME {
        eprintln!(
            "pktgen: --size {} out of range: {:?} frames need {}..={} bytes",
            size,
            a.proto,
            l4.min_frame(),
            MAX_FRAME
        );
        return ExitCode::from(2);
    }
    if let Err(e) = netdev::ifindex(&a.dev) {
        eprintln!("pktgen: {e}");
        return ExitCode::from(1);
    }
    let src_mac = match a.src_mac {
        Some(m) => m,
        None => match netdev::mac(&a.dev) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("pktgen: {e}");
                return ExitCode::from(1);
            }
        },
    };
    let (port_min, port_cnt) = match a.flows {
        Some(f) => {
            if u32::from(a.src_port.0) + f - 1 > 65535 {
                eprintln!(
                    "pktgen: --flows {f} from --src-port {} runs past port 65535",
                    a.src_port.0
                );
                return ExitCode::from(2);
            }
            (a.src_port.0, f)
        }
        None => a.src_port,
    };
    if u64::from(a.src_ip.1) * u64::from(port_cnt) > 65536 {
        eprintln!(
            "pktgen: at most 65536 flows (addresses x ports), got {}",
            u64::from(a.src_ip.1) * u64::from(port_cnt)
        );
        return ExitCode::from(2);
    }
    let cfg = GenConfig {
        dev: a.dev.clone(),
        engine: a.engine,
        spec: TemplateSpec {
            size,
            dst_mac: a.dst_mac.unwrap_or([0xff; 6]),
            src_mac,
            src_ip_min: a.src_ip.0,
            src_ip_cnt: a.src_ip.1,
            dst_ip: a.dst_ip,
            src_port_min: port_min,
            src_port_cnt: port_cnt,
            dst_port: a.dst_port,
            l4,
        },
        count: a.count,
        duration: a.duration,
        rate: a.rate,
        burst: a.burst,
        threads: usize::from(a.threads),
        cpus: a.cpus.map(|c| c.0).unwrap_or_default(),
        queue: a.queue,
        redirect_dev: a.redirect_dev,
        chunk: a.chunk,
        catch_up: a.catch_up,
    };
    if a.count == 0 && a.duration.is_none() {
        eprintln!("pktgen: no --count or --duration given: running until Ctrl-C");
    }
    signal::install();
    match pktgen::run(&cfg) {
        Ok(r) => {
            println!("{}", r.pktgen_text());
            if a.json {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pktgen: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_parses() {
        let a = Args::try_parse_from([
            "pktgen",
            "-i",
            "veth0",
            "-e",
            "afxdp",
            "-s",
            "128",
            "-n",
            "10",
            "-d",
            "1.5",
            "-r",
            "1000",
            "-b",
            "32",
            "--dst-mac",
            "02:00:00:00:00:01",
            "--src-mac",
            "02:00:00:00:00:02",
            "--dst-ip",
            "10.0.0.1",
            "--dst-port",
            "7",
            "--src-ip",
            "10.0.0.1-10.0.0.9",
            "--src-port",
            "1-2",
            "-f",
            "4",
            "-p",
            "tcp-syn",
            "-t",
            "2",
            "--cpus",
            "0,1",
            "--queue",
            "1",
            "--redirect-dev",
            "x",
            "--chunk",
            "5",
            "--catch-up",
            "2ms",
            "--json",
        ])
        .expect("parses");
        assert_eq!(a.cpus, Some(cli::CpuList(vec![0, 1])));
        assert!(Args::try_parse_from(["pktgen", "-i", "x", "--cpus", "a"]).is_err());
        assert!(Args::try_parse_from(["pktgen", "-i", "x", "-b", "0"]).is_err());
    }
}
