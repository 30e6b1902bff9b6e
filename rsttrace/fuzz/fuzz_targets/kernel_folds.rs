//! Arbitrary bytes as one key of the kernel side's fold counts and its per-CPU values, as the
//! agent reads them from the map: a report or none, never a panic.
#![no_main]
use std::mem::size_of;

use libfuzzer_sys::fuzz_target;
use rsttrace::{
    judge::{Judge, Visibility},
    kernel_folds::KernelFolded,
};
use rsttrace_common::{FoldedCount, FoldedKey};

fuzz_target!(|data: &[u8]| {
    if data.len() < size_of::<FoldedKey>() {
        return;
    }
    let (key, values) = data.split_at(size_of::<FoldedKey>());
    // SAFETY: plain integers and arrays of them: every bit pattern is a value.
    let key: FoldedKey = unsafe { std::ptr::read_unaligned(key.as_ptr().cast()) };
    let per_cpu: Vec<FoldedCount> = values
        .chunks_exact(size_of::<FoldedCount>())
        // SAFETY: as above.
        .map(|c| unsafe { std::ptr::read_unaligned(c.as_ptr().cast()) })
        .collect();
    if let Some(folded) = KernelFolded::sum(key, &per_cpu) {
        let _ = folded.report(&Judge::new(Visibility::ALL));
    }
});
