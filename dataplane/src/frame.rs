//! One packet as the pipeline sees it.
//!
//! A [`Frame`] is the packet's first buffer, with the room around it in its
//! UMEM chunk, plus the read-only continuation buffers of a multi-buffer
//! packet (a jumbo frame or an aggregate spans several chunks). Everything
//! the pipeline does to a packet goes through it: read and rewrite the
//! headers, grow or shrink the front (encapsulation, decapsulation) within
//! the chunk's headroom, change the length (an ARP answer). The worker builds
//! frames over UMEM chunks and is the only place that knows where they live;
//! tests build them over a `Vec<u8>`.

/// Why a resize of a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not enough room in front of the packet (headroom) or behind it.
    #[error("no room in the buffer")]
    NoRoom,
    /// Only single-buffer packets can change their length.
    #[error("multi-buffer packet")]
    MultiBuffer,
}

/// A packet: its first buffer's bytes `buf[head..head + len]` inside the
/// chunk `buf`, followed by the bytes of `tail`'s buffers.
#[derive(Debug)]
pub struct Frame<'a> {
    buf: &'a mut [u8],
    head: usize,
    len: usize,
    tail: &'a [&'a [u8]],
    tail_len: usize,
}

impl<'a> Frame<'a> {
    /// A frame whose first buffer holds `len` bytes from `head` within `buf`,
    /// followed by the buffers `tail`. `None` if the range is outside `buf`.
    pub fn new(buf: &'a mut [u8], head: usize, len: usize, tail: &'a [&'a [u8]]) -> Option<Self> {
        if head.checked_add(len)? > buf.len() {
            return None;
        }
        let tail_len = tail.iter().map(|t| t.len()).sum();
        Some(Self {
            buf,
            head,
            len,
            tail,
            tail_len,
        })
    }

    /// A single-buffer frame over a whole buffer with `headroom` bytes in
    /// front of the packet (tests, and frames the pipeline builds).
    pub fn single(buf: &'a mut [u8], headroom: usize, len: usize) -> Option<Self> {
        Self::new(buf, headroom, len, &[])
    }

    /// The packet's bytes in its first buffer (all headers are there).
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.head..self.head + self.len]
    }

    /// The first buffer's bytes, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.head..self.head + self.len]
    }

    /// The continuation buffers (empty for a single-buffer packet).
    #[inline]
    pub fn tail(&self) -> &'a [&'a [u8]] {
        self.tail
    }

    /// The first buffer's bytes (writable) and the continuation buffers, at once.
    #[inline]
    pub fn parts_mut(&mut self) -> (&mut [u8], &'a [&'a [u8]]) {
        (&mut self.buf[self.head..self.head + self.len], self.tail)
    }

    /// The packet's length over all its buffers.
    #[inline]
    pub fn len(&self) -> usize {
        self.len + self.tail_len
    }

    /// Whether the packet is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes in the first buffer.
    #[inline]
    pub fn head_len(&self) -> usize {
        self.len
    }

    /// Whether the packet spans several buffers.
    #[inline]
    pub fn is_multi_buffer(&self) -> bool {
        !self.tail.is_empty()
    }

    /// Offset of the packet start in its buffer (the worker turns a moved
    /// start into the descriptor it transmits).
    #[inline]
    pub fn start(&self) -> usize {
        self.head
    }

    /// Free bytes in front of the packet.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.head
    }

    /// Free bytes behind the first buffer's data.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.buf.len() - self.head - self.len
    }

    /// Grows the packet by `n` bytes at the front (for a header to write);
    /// returns the new first `n` bytes.
    pub fn push_head(&mut self, n: usize) -> Result<&mut [u8], FrameError> {
        if n > self.head {
            return Err(FrameError::NoRoom);
        }
        self.head -= n;
        self.len += n;
        Ok(&mut self.buf[self.head..self.head + n])
    }

    /// Removes `n` bytes from the front (a header consumed).
    pub fn pull_head(&mut self, n: usize) -> Result<(), FrameError> {
        if n > self.len {
            return Err(FrameError::NoRoom);
        }
        self.head += n;
        self.len -= n;
        Ok(())
    }

    /// Sets the length of a single-buffer packet (within the buffer).
    pub fn set_len(&mut self, len: usize) -> Result<(), FrameError> {
        if self.is_multi_buffer() {
            return Err(FrameError::MultiBuffer);
        }
        if self.head + len > self.buf.len() {
            return Err(FrameError::NoRoom);
        }
        self.len = len;
        Ok(())
    }

    /// Replaces a single-buffer packet's bytes with `bytes` (same start).
    pub fn replace(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        self.set_len(bytes.len())?;
        self.data_mut().copy_from_slice(bytes);
        Ok(())
    }

    /// The whole first buffer and the packet's range in it (for stages that
    /// rewrite headers in place, such as encapsulation).
    #[inline]
    pub fn buffer_mut(&mut self) -> (&mut [u8], usize, usize) {
        (self.buf, self.head, self.len)
    }

    /// Sets the packet's range in its first buffer after [`Frame::buffer_mut`].
    pub fn set_range(&mut self, head: usize, len: usize) -> Result<(), FrameError> {
        if head.checked_add(len).is_none_or(|e| e > self.buf.len()) {
            return Err(FrameError::NoRoom);
        }
        // The continuation buffers follow the first buffer's data: a
        // multi-buffer packet may move its start, not its first buffer's end.
        if self.is_multi_buffer() && head + len != self.head + self.len {
            return Err(FrameError::MultiBuffer);
        }
        self.head = head;
        self.len = len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_pull_stay_inside_the_buffer() {
        let mut buf = vec![0u8; 128];
        let mut f = Frame::single(&mut buf, 64, 10).unwrap();
        assert_eq!(f.len(), 10);
        f.push_head(36).unwrap().fill(7);
        assert_eq!((f.start(), f.len()), (28, 46));
        assert_eq!(f.push_head(29), Err(FrameError::NoRoom));
        f.pull_head(40).unwrap();
        assert_eq!((f.start(), f.len()), (68, 6));
        assert_eq!(f.pull_head(7), Err(FrameError::NoRoom));
        f.set_len(60).unwrap();
        assert_eq!(f.set_len(61), Err(FrameError::NoRoom));
        f.replace(&[1, 2, 3]).unwrap();
        assert_eq!(f.data(), &[1, 2, 3]);
    }

    #[test]
    fn multi_buffer_frames_count_every_buffer() {
        let mut buf = vec![0u8; 64];
        let b1 = [1u8; 100];
        let b2 = [2u8; 50];
        let tail = [&b1[..], &b2[..]];
        let mut f = Frame::new(&mut buf, 16, 48, &tail).unwrap();
        assert_eq!(f.len(), 198);
        assert!(f.is_multi_buffer());
        assert_eq!(f.set_len(10), Err(FrameError::MultiBuffer));
        f.push_head(8).unwrap();
        assert_eq!(f.len(), 206);
        assert!(Frame::new(&mut buf, 60, 8, &[]).is_none());
    }
}
