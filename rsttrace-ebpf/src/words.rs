//! Zeroing and copying a word at a time. For a struct copy, an array's zeroing or a run of
//! stores of one value, the compiler emits a call to aya-ebpf's `memcpy`, `memmove` or
//! `memset`, which move one byte per loop turn: ~5 instructions a byte, so zeroing a 72-byte
//! record took ~360. Volatile word accesses stay as written. Every pointer here is 8-aligned
//! (ring-buffer slots, map values and their `u64`-aligned fields).

use core::ptr::{read_volatile, write_volatile};

/// Zero `bytes` at `dst`, rounded up to whole words.
///
/// # Safety
/// `dst` is 8-aligned, with `bytes` rounded up to a multiple of 8 writable.
#[inline(always)]
pub unsafe fn zero(dst: *mut u8, bytes: usize) {
    let words = dst as *mut u64;
    let mut i = 0;
    while i < bytes.div_ceil(8) {
        // SAFETY: the caller's contract.
        unsafe { write_volatile(words.add(i), 0) };
        i += 1;
    }
}

/// `*dst = *src`, a word at a time.
///
/// # Safety
/// Both point at a valid `T`, 8-aligned; `T` is plain data.
#[inline(always)]
pub unsafe fn copy<T: Copy>(dst: *mut T, src: *const T) {
    const { assert!(core::mem::size_of::<T>() % 8 == 0 && core::mem::align_of::<T>() >= 8) };
    let (to, from) = (dst as *mut u64, src as *const u64);
    let mut i = 0;
    while i < core::mem::size_of::<T>() / 8 {
        // SAFETY: the caller's contract.
        unsafe { write_volatile(to.add(i), read_volatile(from.add(i))) };
        i += 1;
    }
}

/// Store `value` at `base + offset`, in one store where `offset` (a constant wherever this is
/// used) is a multiple of its alignment: an unaligned store becomes one store a byte.
///
/// # Safety
/// `base` is 8-aligned, with `offset + size_of::<T>()` bytes writable.
#[inline(always)]
pub unsafe fn put<T: Copy>(base: *mut u8, offset: usize, value: T) {
    // SAFETY: the caller's contract; aligned where the offset says so.
    unsafe {
        let at = base.add(offset) as *mut T;
        if offset % core::mem::align_of::<T>() == 0 {
            write_volatile(at, value);
        } else {
            at.write_unaligned(value);
        }
    }
}

/// A 16-byte address at `base + offset`, as four 32-bit stores (see [`put`]).
///
/// # Safety
/// As [`put`].
#[inline(always)]
pub unsafe fn put_address(base: *mut u8, offset: usize, address: &[u8; 16]) {
    let mut i = 0;
    while i < 4 {
        let word = u32::from_ne_bytes([address[i * 4], address[i * 4 + 1], address[i * 4 + 2], address[i * 4 + 3]]);
        // SAFETY: the caller's contract.
        unsafe { put(base, offset + i * 4, word) };
        i += 1;
    }
}
