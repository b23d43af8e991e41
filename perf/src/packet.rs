//! Frame templates for the generators and payload parsing for the sink.
//!
//! Frame layout: Ethernet, IPv4 without options, UDP or TCP, then the
//! measurement payload (little endian, 16 bytes):
//! `magic: u16 = 0x4852, flow: u16, seq: u32, send_ns: u64` where `send_ns`
//! is CLOCK_MONOTONIC. The XDP generator (`bpf/pktgen.bpf.c`) writes the same
//! layout and uses the same partial checksums computed here.

use std::net::Ipv4Addr;

/// Payload magic ("HR").
pub const MAGIC: u16 = 0x4852;
/// Length of the measurement payload.
pub const PAYLOAD_LEN: usize = 16;
/// Offset of the source IPv4 address.
pub const OFF_SRC_IP: usize = 26;
/// Offset of the IPv4 header checksum.
pub const OFF_IP_CSUM: usize = 24;
/// Offset of the L4 source port.
pub const OFF_SRC_PORT: usize = 34;
/// Offset of the TCP sequence number.
pub const OFF_TCP_SEQ: usize = 38;
/// Offset of the UDP checksum.
pub const OFF_UDP_CSUM: usize = 40;
/// Offset of the TCP checksum.
pub const OFF_TCP_CSUM: usize = 50;
/// Smallest frame (without FCS) the generators build, as Linux pktgen's 60.
pub const MIN_FRAME: usize = 60;
/// Largest frame (without FCS).
pub const MAX_FRAME: usize = 1514;

/// L4 protocol and flavour of generated traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum L4 {
    /// UDP datagrams.
    Udp,
    /// TCP SYN segments.
    TcpSyn,
    /// TCP ACK|PSH segments of an established flow.
    TcpAck,
}

impl L4 {
    /// IP protocol number.
    pub fn proto(self) -> u8 {
        match self {
            L4::Udp => 17,
            _ => 6,
        }
    }
    /// Offset of the measurement payload.
    pub fn payload_off(self) -> usize {
        match self {
            L4::Udp => 42,
            _ => 54,
        }
    }
    /// Smallest frame that holds headers and measurement payload.
    pub fn min_frame(self) -> usize {
        (self.payload_off() + PAYLOAD_LEN).max(MIN_FRAME)
    }
}

/// Everything that defines the generated frames.
#[derive(Debug, Clone)]
pub struct TemplateSpec {
    /// Frame length without FCS.
    pub size: usize,
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// First source address.
    pub src_ip_min: Ipv4Addr,
    /// Number of source addresses.
    pub src_ip_cnt: u32,
    /// Destination address.
    pub dst_ip: Ipv4Addr,
    /// First source port.
    pub src_port_min: u16,
    /// Number of source ports.
    pub src_port_cnt: u32,
    /// Destination port.
    pub dst_port: u16,
    /// Protocol.
    pub l4: L4,
}

/// A frame template plus the partial checksums of its invariant part.
#[derive(Debug, Clone)]
pub struct Template {
    /// Full frame with all variable fields zero.
    pub frame: Vec<u8>,
    /// One's complement sum (native 16-bit words, unfolded) of the IPv4
    /// header with source address and checksum zero.
    pub ip_sum: u32,
    /// Same for the L4 checksum, pseudo header included.
    pub l4_sum: u32,
    /// Protocol.
    pub l4: L4,
    /// TCP sequence number of packet 0.
    pub tcp_seq_base: u32,
    /// TCP sequence step (payload length).
    pub tcp_seq_step: u32,
}

fn sum16(mut sum: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_ne_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(u16::from_ne_bytes([*last, 0]));
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

impl Template {
    /// Builds the template; `spec` must have been validated (size range).
    pub fn new(spec: &TemplateSpec) -> Template {
        let size = spec.size.max(spec.l4.min_frame());
        let mut f = vec![0u8; size];
        f[0..6].copy_from_slice(&spec.dst_mac);
        f[6..12].copy_from_slice(&spec.src_mac);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip_len = (size - 14) as u16;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        f[20..22].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
        f[22] = 64;
        f[23] = spec.l4.proto();
        f[30..34].copy_from_slice(&spec.dst_ip.octets());
        f[36..38].copy_from_slice(&spec.dst_port.to_be_bytes());
        let l4_len = size - 34;
        let (tcp_seq_base, tcp_seq_step) = match spec.l4 {
            L4::Udp => {
                f[38..40].copy_from_slice(&(l4_len as u16).to_be_bytes());
                (0, 0)
            }
            L4::TcpSyn | L4::TcpAck => {
                f[46] = 5 << 4;
                f[47] = if spec.l4 == L4::TcpSyn { 0x02 } else { 0x18 };
                f[48..50].copy_from_slice(&64240u16.to_be_bytes());
                if spec.l4 == L4::TcpAck {
                    f[42..46].copy_from_slice(&1u32.to_be_bytes());
                    (1, (size - 54) as u32)
                } else {
                    (0x1000, 0)
                }
            }
        };
        let po = spec.l4.payload_off();
        f[po..po + 2].copy_from_slice(&MAGIC.to_le_bytes());
        let ip_sum = sum16(0, &f[14..34]);
        let mut l4_sum = sum16(0, &f[30..34]); // dst in pseudo header
        l4_sum = sum16(l4_sum, &[0, spec.l4.proto()]);
        l4_sum = sum16(l4_sum, &(l4_len as u16).to_be_bytes());
        l4_sum = sum16(l4_sum, &f[34..]);
        Template {
            frame: f,
            ip_sum,
            l4_sum,
            l4: spec.l4,
            tcp_seq_base,
            tcp_seq_step,
        }
    }

    /// Writes frame `seq` of flow `flow` (5-tuple index `tuple`) into `out`
    /// (at least `frame.len()` bytes) and returns the frame length.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &self,
        out: &mut [u8],
        src_ip: u32,
        src_port: u16,
        flow: u16,
        seq: u32,
        now_ns: u64,
    ) -> usize {
        let f = &mut out[..self.frame.len()];
        f.copy_from_slice(&self.frame);
        f[OFF_SRC_IP..OFF_SRC_IP + 4].copy_from_slice(&src_ip.to_be_bytes());
        f[OFF_SRC_PORT..OFF_SRC_PORT + 2].copy_from_slice(&src_port.to_be_bytes());
        let po = self.l4.payload_off();
        f[po + 2..po + 4].copy_from_slice(&flow.to_le_bytes());
        f[po + 4..po + 8].copy_from_slice(&seq.to_le_bytes());
        f[po + 8..po + 16].copy_from_slice(&now_ns.to_le_bytes());
        let mut l4 = self.l4_sum;
        if self.l4 != L4::Udp {
            let tseq = self
                .tcp_seq_base
                .wrapping_add(seq.wrapping_mul(self.tcp_seq_step));
            f[OFF_TCP_SEQ..OFF_TCP_SEQ + 4].copy_from_slice(&tseq.to_be_bytes());
            l4 = sum16(l4, &f[OFF_TCP_SEQ..OFF_TCP_SEQ + 4]);
        }
        l4 = sum16(l4, &f[po + 2..po + 16]);
        let src = [f[26], f[27], f[28], f[29]];
        let ip = fold(sum16(self.ip_sum, &src));
        f[OFF_IP_CSUM..OFF_IP_CSUM + 2].copy_from_slice(&ip.to_ne_bytes());
        l4 = sum16(l4, &src);
        l4 = sum16(l4, &f[OFF_SRC_PORT..OFF_SRC_PORT + 2]);
        let c = fold(l4);
        if self.l4 == L4::Udp {
            let c = if c == 0 { 0xffff } else { c };
            f[OFF_UDP_CSUM..OFF_UDP_CSUM + 2].copy_from_slice(&c.to_ne_bytes());
        } else {
            f[OFF_TCP_CSUM..OFF_TCP_CSUM + 2].copy_from_slice(&c.to_ne_bytes());
        }
        f.len()
    }
}

/// Flow index -> (source address, source port), the mapping both engines use.
pub fn flow_tuple(spec: &TemplateSpec, flow: u32) -> (u32, u16) {
    let total = (spec.src_ip_cnt * spec.src_port_cnt).max(1);
    let g = flow % total;
    let ic = spec.src_ip_cnt.max(1);
    let ip = u32::from(spec.src_ip_min).wrapping_add(g % ic);
    let port = (u32::from(spec.src_port_min) + (g / ic) % spec.src_port_cnt.max(1)) as u16;
    (ip, port)
}

/// Measurement payload found in a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Flow id.
    pub flow: u16,
    /// Per-flow sequence number.
    pub seq: u32,
    /// CLOCK_MONOTONIC send time.
    pub send_ns: u64,
}

/// Parses an Ethernet frame; `None` unless it is IPv4 UDP/TCP with the magic.
pub fn parse_frame(f: &[u8]) -> Option<Probe> {
    if f.len() < 58 || f[12] != 0x08 || f[13] != 0x00 || f[14] != 0x45 {
        return None;
    }
    let po = match f[23] {
        17 => 42,
        6 => 54,
        _ => return None,
    };
    parse_payload(f.get(po..)?)
}

/// Parses a measurement payload (e.g. a UDP socket's datagram).
pub fn parse_payload(p: &[u8]) -> Option<Probe> {
    if p.len() < PAYLOAD_LEN || u16::from_le_bytes([p[0], p[1]]) != MAGIC {
        return None;
    }
    Some(Probe {
        flow: u16::from_le_bytes([p[2], p[3]]),
        seq: u32::from_le_bytes([p[4], p[5], p[6], p[7]]),
        send_ns: u64::from_le_bytes([p[8], p[9], p[10], p[11], p[12], p[13], p[14], p[15]]),
    })
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!(
            "invalid MAC address {s:?}: expected six hex bytes separated by ':'"
        ));
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16)
            .map_err(|_| format!("invalid MAC address {s:?}: bad byte {p:?}"))?;
    }
    Ok(mac)
}

/// Formats a MAC address.
pub fn fmt_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(l4: L4, size: usize) -> TemplateSpec {
        TemplateSpec {
            size,
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_mac: [2, 0, 0, 0, 0, 1],
            src_ip_min: Ipv4Addr::new(10, 0, 0, 1),
            src_ip_cnt: 4,
            dst_ip: Ipv4Addr::new(10, 0, 1, 1),
            src_port_min: 1000,
            src_port_cnt: 2,
            dst_port: 9,
            l4,
        }
    }

    fn verify(f: &[u8], l4: L4) {
        // IPv4 header sums to 0xffff
        assert_eq!(fold(sum16(0, &f[14..34])), 0);
        let mut s = sum16(0, &f[26..34]);
        s = sum16(s, &[0, l4.proto()]);
        s = sum16(s, &((f.len() - 34) as u16).to_be_bytes());
        s = sum16(s, &f[34..]);
        assert_eq!(fold(s), 0);
    }

    #[test]
    fn checksums_are_valid() {
        for l4 in [L4::Udp, L4::TcpSyn, L4::TcpAck] {
            for size in [60, 71, 128, 1514] {
                let sp = spec(l4, size);
                let t = Template::new(&sp);
                let mut buf = vec![0u8; 2048];
                for flow in 0..9u32 {
                    let (ip, port) = flow_tuple(&sp, flow);
                    let n = t.write(
                        &mut buf,
                        ip,
                        port,
                        flow as u16,
                        flow * 77 + 3,
                        0x1234_5678_9abc + u64::from(flow),
                    );
                    verify(&buf[..n], l4);
                    let p = parse_frame(&buf[..n]).expect("probe");
                    assert_eq!(p.flow, flow as u16);
                    assert_eq!(p.seq, flow * 77 + 3);
                }
            }
        }
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(parse_mac("02:00:0a:0b:0c:ff"), Ok([2, 0, 10, 11, 12, 255]));
        assert!(parse_mac("02:00").is_err());
        assert!(parse_mac("zz:00:00:00:00:00").is_err());
    }
}
