//! Minimal checked parse of the fields the director needs from an Ethernet
//! frame. Private to the director so it can be swapped for the shared packet
//! views and flow key once those land.

use std::net::Ipv4Addr;

use thiserror::Error;

use super::{FlowFields, IPPROTO_TCP, IPPROTO_UDP};

/// Ethernet header length (no VLAN tag).
const ETH_LEN: usize = 14;

/// Why a frame carries no placeable flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FrameError {
    /// Shorter than its headers.
    #[error("truncated frame")]
    Truncated,
    /// Not an untagged IPv4 frame.
    #[error("not IPv4")]
    NotIpv4,
    /// Bad IHL or total length.
    #[error("malformed IPv4 header")]
    BadIpHeader,
    /// A fragment: only unfragmented packets carry both ports.
    #[error("IPv4 fragment")]
    Fragment,
    /// Neither TCP nor UDP.
    #[error("not TCP or UDP")]
    NotTcpUdp,
}

/// Result of [`parse_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedFrame {
    /// Flow fields.
    pub flow: FlowFields,
    /// Offset of the IPv4 header in the frame.
    pub ip_offset: usize,
    /// IPv4 total length (excludes Ethernet padding).
    pub ip_len: usize,
}

/// Parses an untagged Ethernet/IPv4/TCP-or-UDP frame. Never panics.
pub fn parse_frame(frame: &[u8]) -> Result<ParsedFrame, FrameError> {
    if frame.len() < ETH_LEN {
        return Err(FrameError::Truncated);
    }
    if frame[12..14] != [0x08, 0x00] {
        return Err(FrameError::NotIpv4);
    }
    let ip = &frame[ETH_LEN..];
    if ip.len() < 20 {
        return Err(FrameError::Truncated);
    }
    if ip[0] >> 4 != 4 {
        return Err(FrameError::NotIpv4);
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ihl < 20 || total < ihl {
        return Err(FrameError::BadIpHeader);
    }
    if total > ip.len() {
        return Err(FrameError::Truncated);
    }
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return Err(FrameError::Fragment);
    }
    let proto = ip[9];
    let l4 = &ip[ihl..total];
    let need = match proto {
        IPPROTO_TCP => 20,
        IPPROTO_UDP => 8,
        _ => return Err(FrameError::NotTcpUdp),
    };
    if l4.len() < need {
        return Err(FrameError::Truncated);
    }
    Ok(ParsedFrame {
        flow: FlowFields {
            proto,
            src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
            dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
            sport: u16::from_be_bytes([l4[0], l4[1]]),
            dport: u16::from_be_bytes([l4[2], l4[3]]),
            tcp_flags: if proto == IPPROTO_TCP { l4[13] } else { 0 },
        },
        ip_offset: ETH_LEN,
        ip_len: total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    const SYN_FRAME: [u8; 54] = [
        2, 0, 0, 0, 0, 1, 0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x08, 0x00,
        0x45, 0x00, 0x00, 0x28, 0, 1, 0x40, 0x00, 64, 6, 0, 0, 192, 0, 2, 1, 10, 0, 0, 100,
        0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ];

    #[test]
    fn parses_tcp_syn() {
        let p = parse_frame(&SYN_FRAME).unwrap();
        assert_eq!(
            p.flow,
            FlowFields {
                proto: 6,
                src: Ipv4Addr::new(192, 0, 2, 1),
                dst: Ipv4Addr::new(10, 0, 0, 100),
                sport: 40000,
                dport: 80,
                tcp_flags: 0x02,
            }
        );
        assert_eq!((p.ip_offset, p.ip_len), (14, 40));
        let mut padded = SYN_FRAME.to_vec();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(parse_frame(&padded).unwrap().ip_len, 40);
    }

    #[test]
    fn rejects() {
        let mut f = SYN_FRAME;
        f[20] = 0x20; // MF
        assert_eq!(parse_frame(&f), Err(FrameError::Fragment));
        let mut f = SYN_FRAME;
        f[21] = 1; // offset 8
        f[20] = 0x40;
        assert_eq!(parse_frame(&f), Err(FrameError::Fragment));
        let mut f = SYN_FRAME;
        f[23] = 1;
        assert_eq!(parse_frame(&f), Err(FrameError::NotTcpUdp));
        let mut f = SYN_FRAME;
        f[12] = 0x81;
        assert_eq!(parse_frame(&f), Err(FrameError::NotIpv4));
        let mut f = SYN_FRAME;
        f[14] = 0x44;
        assert_eq!(parse_frame(&f), Err(FrameError::BadIpHeader));
        for len in 0..SYN_FRAME.len() {
            assert!(parse_frame(&SYN_FRAME[..len]).is_err(), "len {len}");
        }
    }
}
