//! Multi-buffer packets: the links between a packet's UMEM frames.
//!
//! With `XDP_USE_SG` a packet longer than one UMEM frame (a jumbo frame, an
//! aggregate) arrives as several RX descriptors, all but the last flagged
//! `XDP_PKT_CONTD`, and must be transmitted the same way. The worker passes
//! a packet around as its first descriptor (the pacer queues it, the TX
//! backlog takes it) and keeps the rest here: `next[i]` is the descriptor
//! that follows frame `i`. The table is sized once (one slot per frame), so
//! linking never allocates.

use xsk_rs::FrameDesc;

/// `XDP_PKT_CONTD`: more buffers of this packet follow.
pub const CONTD: u32 = 1;

/// Most buffers a packet may span (a 64 KiB aggregate in 4 KiB frames takes
/// 17; the kernel's own limit is MAX_SKB_FRAGS + 1).
pub const MAX_BUFS: usize = 24;

/// Continuation links of one worker's UMEM.
#[derive(Debug)]
pub struct Chains {
    next: Vec<Option<FrameDesc>>,
    frame_size: usize,
}

impl Chains {
    /// Links for `frames` frames of `frame_size` bytes.
    pub fn new(frames: usize, frame_size: usize) -> Self {
        Self {
            next: vec![None; frames],
            frame_size,
        }
    }

    #[inline]
    fn idx(&self, d: &FrameDesc) -> usize {
        d.addr() / self.frame_size
    }

    /// Links `next` behind `prev`.
    #[inline]
    pub fn link(&mut self, prev: &FrameDesc, next: FrameDesc) {
        let i = self.idx(prev);
        self.next[i] = Some(next);
    }

    /// The buffer after `d`, unlinking it (the packet is being taken apart).
    #[inline]
    pub fn take(&mut self, d: &FrameDesc) -> Option<FrameDesc> {
        let i = self.idx(d);
        self.next.get_mut(i).and_then(Option::take)
    }

    /// The buffer after `d`, leaving the link in place.
    #[inline]
    pub fn peek(&self, d: &FrameDesc) -> Option<FrameDesc> {
        self.next.get(self.idx(d)).copied().flatten()
    }

    /// Every buffer of the packet starting at `first`, in order, into `out`
    /// (at most [`MAX_BUFS`]); returns how many.
    pub fn collect(&self, first: FrameDesc, out: &mut [FrameDesc; MAX_BUFS]) -> usize {
        let mut n = 0;
        let mut cur = Some(first);
        while let Some(d) = cur {
            if n == MAX_BUFS {
                break;
            }
            out[n] = d;
            n += 1;
            cur = if d.options() & CONTD != 0 {
                self.peek(&d)
            } else {
                None
            };
        }
        n
    }

    /// Takes the packet starting at `first` apart, handing every buffer to
    /// `f` in order (their links are cleared).
    pub fn drain(&mut self, first: FrameDesc, mut f: impl FnMut(FrameDesc)) {
        let mut cur = Some(first);
        while let Some(d) = cur {
            cur = if d.options() & CONTD != 0 {
                self.take(&d)
            } else {
                None
            };
            f(d);
        }
    }
}
