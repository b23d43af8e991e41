//! Argument parsers shared by the binaries (errors become clap messages).

use std::{net::Ipv4Addr, time::Duration};

/// Parses a duration in seconds (`10`, `0.5`, `250ms`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, scale) = if let Some(v) = s.strip_suffix("ms") {
        (v, 1e-3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (seconds, e.g. 10, 0.5 or 250ms)"))?;
    if !v.is_finite() || !(0.0..=1e7).contains(&v) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// Parses `A` or `A-B` IPv4 ranges into (first, count).
pub fn parse_ip_range(s: &str) -> Result<(Ipv4Addr, u32), String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: Ipv4Addr = a
        .trim()
        .parse()
        .map_err(|_| format!("invalid IPv4 address {a:?}"))?;
    let b: Ipv4Addr = b
        .trim()
        .parse()
        .map_err(|_| format!("invalid IPv4 address {b:?}"))?;
    let (x, y) = (u32::from(a), u32::from(b));
    if y < x {
        return Err(format!("empty address range {s:?}"));
    }
    let n = y - x + 1;
    if n > 65536 {
        return Err(format!(
            "address range {s:?} holds more than 65536 addresses"
        ));
    }
    Ok((a, n))
}

/// Parses `P` or `P-Q` port ranges into (first, count).
pub fn parse_port_range(s: &str) -> Result<(u16, u32), String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a
        .trim()
        .parse()
        .map_err(|_| format!("invalid port {a:?}"))?;
    let b: u16 = b
        .trim()
        .parse()
        .map_err(|_| format!("invalid port {b:?}"))?;
    if b < a {
        return Err(format!("empty port range {s:?}"));
    }
    Ok((a, u32::from(b - a) + 1))
}

/// An error with its chain of sources, e.g. `creating socket: Device busy`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// A CPU list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// Parses a CPU list `0,1,3-5`.
pub fn parse_cpu_list(s: &str) -> Result<CpuList, String> {
    parse_cpus(s).map(CpuList)
}

/// Parses a CPU list `0,1,3-5`.
pub fn parse_cpus(s: &str) -> Result<Vec<usize>, String> {
    let mut v = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: usize = a.parse().map_err(|_| format!("invalid CPU {a:?}"))?;
        let b: usize = b.parse().map_err(|_| format!("invalid CPU {b:?}"))?;
        if b < a || b > 4095 {
            return Err(format!("invalid CPU range {part:?}"));
        }
        v.extend(a..=b);
    }
    Ok(v)
}

/// Parses a MAC address.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    crate::packet::parse_mac(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(
            parse_ip_range("10.0.0.1-10.0.0.4"),
            Ok((Ipv4Addr::new(10, 0, 0, 1), 4))
        );
        assert!(parse_ip_range("10.0.0.4-10.0.0.1").is_err());
        assert_eq!(parse_port_range("1000-1063"), Ok((1000, 64)));
        assert!(parse_port_range("70000").is_err());
        assert_eq!(parse_cpus("0,2-3"), Ok(vec![0, 2, 3]));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("-1").is_err());
    }
}
