//! Bounds-checked big-endian field access shared by the packet views.
//!
//! Every read returns 0 (and every write does nothing) when the field lies outside the
//! buffer. The views validate their lengths in `new_checked`, so in practice a field is
//! always in bounds; the fallback exists so that no accessor can panic even after a setter
//! has rewritten a structural field (a header length, a VLAN TPID) of a validated view.

#[inline(always)]
pub(crate) fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

#[inline(always)]
pub(crate) fn u16_at(b: &[u8], off: usize) -> u16 {
    match b.get(off..off.wrapping_add(2)) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

#[inline(always)]
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    match b.get(off..off.wrapping_add(4)) {
        Some(&[a, c, d, e]) => u32::from_be_bytes([a, c, d, e]),
        _ => 0,
    }
}

#[inline(always)]
pub(crate) fn array_at<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    match b.get(off..off.wrapping_add(N)) {
        Some(s) => {
            let mut out = [0u8; N];
            out.copy_from_slice(s);
            out
        }
        None => [0u8; N],
    }
}

#[inline(always)]
pub(crate) fn set_u8(b: &mut [u8], off: usize, v: u8) {
    if let Some(x) = b.get_mut(off) {
        *x = v;
    }
}

#[inline(always)]
pub(crate) fn set_u16(b: &mut [u8], off: usize, v: u16) {
    set_bytes(b, off, &v.to_be_bytes());
}

#[inline(always)]
pub(crate) fn set_u32(b: &mut [u8], off: usize, v: u32) {
    set_bytes(b, off, &v.to_be_bytes());
}

#[inline(always)]
pub(crate) fn set_bytes(b: &mut [u8], off: usize, v: &[u8]) {
    if let Some(s) = b.get_mut(off..off.wrapping_add(v.len())) {
        s.copy_from_slice(v);
    }
}

/// `b[from..to]`, clamped to the buffer (empty if out of range).
#[inline(always)]
pub(crate) fn slice(b: &[u8], from: usize, to: usize) -> &[u8] {
    let to = to.min(b.len());
    b.get(from..to).unwrap_or(&[])
}

/// `b[from..to]`, clamped to the buffer (empty if out of range).
#[inline(always)]
pub(crate) fn slice_mut(b: &mut [u8], from: usize, to: usize) -> &mut [u8] {
    let to = to.min(b.len());
    if from <= to {
        &mut b[from..to]
    } else {
        &mut []
    }
}
