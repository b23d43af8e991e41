//! Parse errors and a per-kind counter for them.

use std::fmt;

/// The protocol layer a [`ParseError`] refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Layer {
    /// Ethernet II header (destination, source, EtherType).
    Ethernet = 0,
    /// An 802.1Q / 802.1ad VLAN tag.
    Vlan,
    /// ARP (Ethernet/IPv4).
    Arp,
    /// IPv4 header.
    Ipv4,
    /// IPv6 fixed header.
    Ipv6,
    /// An IPv6 extension header.
    Ipv6Ext,
    /// TCP header.
    Tcp,
    /// UDP header.
    Udp,
    /// ICMP or ICMPv6 header.
    Icmp,
}

impl Layer {
    /// Number of layers (for counter arrays).
    pub const COUNT: usize = 9;
    /// All layers, in discriminant order.
    pub const ALL: [Layer; Layer::COUNT] = [
        Layer::Ethernet,
        Layer::Vlan,
        Layer::Arp,
        Layer::Ipv4,
        Layer::Ipv6,
        Layer::Ipv6Ext,
        Layer::Tcp,
        Layer::Udp,
        Layer::Icmp,
    ];

    /// Short lower-case name, suitable as a metric label.
    pub const fn name(self) -> &'static str {
        match self {
            Layer::Ethernet => "ethernet",
            Layer::Vlan => "vlan",
            Layer::Arp => "arp",
            Layer::Ipv4 => "ipv4",
            Layer::Ipv6 => "ipv6",
            Layer::Ipv6Ext => "ipv6_ext",
            Layer::Tcp => "tcp",
            Layer::Udp => "udp",
            Layer::Icmp => "icmp",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a frame or header could not be parsed (or emitted). `Copy` and allocation-free so
/// the packet path can return and count it cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ParseError {
    /// The buffer ends before the end of a fixed header, of the header length the header
    /// declares, or of the packet length it declares.
    #[error("truncated {layer} header or packet")]
    Truncated {
        /// Where the buffer ran out.
        layer: Layer,
    },
    /// The IP version nibble does not match the EtherType (4 under 0x0800, 6 under 0x86DD).
    #[error("bad IP version in {layer} header")]
    BadVersion {
        /// IPv4 or IPv6.
        layer: Layer,
    },
    /// A header-length field is below the minimum header size (IPv4 IHL < 5, TCP data
    /// offset < 5).
    #[error("bad {layer} header length field")]
    BadHeaderLength {
        /// The offending header.
        layer: Layer,
    },
    /// A packet-length field is inconsistent with its header (IPv4 total length shorter
    /// than the header, UDP length under 8).
    #[error("bad {layer} length field")]
    BadLength {
        /// The offending header.
        layer: Layer,
    },
    /// A well-formed header of a variant this code does not handle (ARP for a hardware or
    /// protocol other than Ethernet/IPv4).
    #[error("unsupported {layer} variant")]
    Unsupported {
        /// The header.
        layer: Layer,
    },
    /// More IPv6 extension headers than the parser is willing to walk.
    #[error("too many IPv6 extension headers")]
    TooManyExtensionHeaders,
    /// An `emit` was given a buffer too small for the header.
    #[error("buffer too small to emit {layer} header")]
    BufferTooSmall {
        /// The header being written.
        layer: Layer,
    },
}

/// The kind of a [`ParseError`], without its layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorKind {
    /// [`ParseError::Truncated`].
    Truncated = 0,
    /// [`ParseError::BadVersion`].
    BadVersion,
    /// [`ParseError::BadHeaderLength`].
    BadHeaderLength,
    /// [`ParseError::BadLength`].
    BadLength,
    /// [`ParseError::Unsupported`].
    Unsupported,
    /// [`ParseError::TooManyExtensionHeaders`].
    TooManyExtensionHeaders,
    /// [`ParseError::BufferTooSmall`].
    BufferTooSmall,
}

impl ErrorKind {
    /// Number of kinds.
    pub const COUNT: usize = 7;
    /// All kinds, in discriminant order.
    pub const ALL: [ErrorKind; ErrorKind::COUNT] = [
        ErrorKind::Truncated,
        ErrorKind::BadVersion,
        ErrorKind::BadHeaderLength,
        ErrorKind::BadLength,
        ErrorKind::Unsupported,
        ErrorKind::TooManyExtensionHeaders,
        ErrorKind::BufferTooSmall,
    ];

    /// Short snake-case name, suitable as a metric label.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorKind::Truncated => "truncated",
            ErrorKind::BadVersion => "bad_version",
            ErrorKind::BadHeaderLength => "bad_header_length",
            ErrorKind::BadLength => "bad_length",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::TooManyExtensionHeaders => "too_many_ext_headers",
            ErrorKind::BufferTooSmall => "buffer_too_small",
        }
    }
}

impl ParseError {
    /// The error's kind.
    pub const fn kind(&self) -> ErrorKind {
        match self {
            ParseError::Truncated { .. } => ErrorKind::Truncated,
            ParseError::BadVersion { .. } => ErrorKind::BadVersion,
            ParseError::BadHeaderLength { .. } => ErrorKind::BadHeaderLength,
            ParseError::BadLength { .. } => ErrorKind::BadLength,
            ParseError::Unsupported { .. } => ErrorKind::Unsupported,
            ParseError::TooManyExtensionHeaders => ErrorKind::TooManyExtensionHeaders,
            ParseError::BufferTooSmall { .. } => ErrorKind::BufferTooSmall,
        }
    }

    /// The layer the error refers to.
    pub const fn layer(&self) -> Layer {
        match self {
            ParseError::Truncated { layer }
            | ParseError::BadVersion { layer }
            | ParseError::BadHeaderLength { layer }
            | ParseError::BadLength { layer }
            | ParseError::Unsupported { layer }
            | ParseError::BufferTooSmall { layer } => *layer,
            ParseError::TooManyExtensionHeaders => Layer::Ipv6Ext,
        }
    }
}

/// Counters of parsed and malformed frames, per error kind and layer.
///
/// Plain integers with no atomics: one per worker thread, bumped on the packet path
/// ([`ParseStats::record`] is a couple of adds), read and published periodically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseStats {
    /// Frames parsed successfully.
    pub ok: u64,
    counts: [[u64; Layer::COUNT]; ErrorKind::COUNT],
}

impl ParseStats {
    /// Count the outcome of one parse and pass it through.
    #[inline]
    pub fn record<T>(&mut self, r: Result<T, ParseError>) -> Result<T, ParseError> {
        match &r {
            Ok(_) => self.ok += 1,
            Err(e) => self.record_error(e),
        }
        r
    }

    /// Count one error.
    #[inline]
    pub fn record_error(&mut self, e: &ParseError) {
        self.counts[e.kind() as usize][e.layer() as usize] += 1;
    }

    /// How many errors of `kind` at `layer` were counted.
    pub fn count(&self, kind: ErrorKind, layer: Layer) -> u64 {
        self.counts[kind as usize][layer as usize]
    }

    /// Total errors of every kind.
    pub fn errors(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// The non-zero error counters as `(kind, layer, count)`.
    pub fn iter(&self) -> impl Iterator<Item = (ErrorKind, Layer, u64)> + '_ {
        ErrorKind::ALL.into_iter().flat_map(move |k| {
            Layer::ALL.into_iter().filter_map(move |l| {
                let c = self.counts[k as usize][l as usize];
                (c != 0).then_some((k, l, c))
            })
        })
    }

    /// Add another set of counters (e.g. to aggregate workers).
    pub fn merge(&mut self, other: &ParseStats) {
        self.ok += other.ok;
        for (a, b) in self
            .counts
            .iter_mut()
            .flatten()
            .zip(other.counts.iter().flatten())
        {
            *a += b;
        }
    }
}
