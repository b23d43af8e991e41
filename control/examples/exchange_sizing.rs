//! Prints convergence time and bandwidth of the exchange in simulation for
//! pool sizes 3, 16, 64 and 128 (1% loss, 0.2-2 ms delay, 100 ms ticks).
//!
//! `cargo run --release -p headroom-control --example exchange_sizing`

use std::time::Duration;

use headroom_control::sim::measure;

fn main() {
    println!("nodes  join_ms  converge_one_ms  converge_all_ms  idle_B/node/s  busy_B/node/s  false_failures  detect_ms");
    for n in [3usize, 16, 64, 128] {
        let settle = Duration::from_secs(2);
        let window = Duration::from_secs(3);
        match measure(n, 42, settle, window) {
            Some(s) => println!(
                "{:>5}  {:>7}  {:>15}  {:>15}  {:>13.0}  {:>13.0}  {:>14}  {:>9}",
                s.nodes,
                s.join.as_millis(),
                s.converge_one.as_millis(),
                s.converge_all.as_millis(),
                s.bytes_per_node_s_idle,
                s.bytes_per_node_s_busy,
                s.false_failures,
                s.detection.as_millis()
            ),
            None => println!("{n:>5}  did not converge"),
        }
    }
}
