//! H.264 Annex B byte streams, sans-IO: NAL units out of a byte stream, and
//! the few header fields passthrough needs (SPS size and profile, slice
//! type, access-unit boundaries).
//!
//! A camera's own H.264 comes either framed (a V4L2 buffer is one access
//! unit) or as a bare byte stream (`rpicam-vid -o -`, where a read may end
//! anywhere, even inside a start code). [`NalSplitter`] takes both: bytes in
//! any chunking, NAL units out as soon as the next start code proves they
//! ended, [`NalSplitter::finish`] for a buffer boundary.
//!
//! NAL units keep their emulation-prevention bytes (they go to RTP as they
//! are); [`BitReader`] skips them while reading a header.

use std::collections::VecDeque;

use thiserror::Error;

mod bits;
mod probe;
mod slice;
mod sps;

pub use bits::*;
pub use probe::*;
pub use slice::*;
pub use sps::*;
#[cfg(test)]
pub(crate) mod tests;

/// The largest NAL unit the splitter holds. A 1080p intra slice is well
/// under 1 MiB; anything near this is a broken stream, and holding it would
/// let one bad camera take the board's memory.
pub const MAX_NAL_BYTES: usize = 4 * 1024 * 1024;

/// The splitter's one failure: a NAL unit over the cap.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
pub enum AnnexBError {
    #[error("an H.264 NAL unit is larger than {limit} bytes; dropped up to the next start code")]
    NalTooLarge { limit: usize },
}

/// Why a NAL header, an SPS or a slice header could not be read.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("empty NAL unit")]
    Empty,
    #[error("NAL unit with forbidden_zero_bit set")]
    ForbiddenBit,
    #[error("NAL unit type {got}, expected {expected}")]
    WrongType { expected: u8, got: u8 },
    #[error("header ends early")]
    Truncated,
    #[error("exp-Golomb code longer than 32 bits")]
    ExpGolombTooLong,
    #[error("{field} = {value} is out of range")]
    OutOfRange { field: &'static str, value: i64 },
}

/// NAL unit types (Table 7-1) that passthrough tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NalType {
    /// 1: a slice of a non-IDR picture.
    Slice,
    /// 5: a slice of an IDR picture, where a decoder may start.
    Idr,
    /// 6: supplemental enhancement information.
    Sei,
    /// 7: sequence parameter set.
    Sps,
    /// 8: picture parameter set.
    Pps,
    /// 9: access unit delimiter.
    Aud,
    /// Anything else, by its number (data partitions 2-4, filler 12, ...).
    Other(u8),
}

impl NalType {
    /// The type in a NAL unit's first byte.
    pub fn of(header: u8) -> Self {
        match header & 0x1f {
            1 => NalType::Slice,
            5 => NalType::Idr,
            6 => NalType::Sei,
            7 => NalType::Sps,
            8 => NalType::Pps,
            9 => NalType::Aud,
            n => NalType::Other(n),
        }
    }

    pub fn code(self) -> u8 {
        match self {
            NalType::Slice => 1,
            NalType::Idr => 5,
            NalType::Sei => 6,
            NalType::Sps => 7,
            NalType::Pps => 8,
            NalType::Aud => 9,
            NalType::Other(n) => n,
        }
    }

    /// Coded slice data (types 1-5): part of a picture.
    pub fn is_vcl(self) -> bool {
        (1..=5).contains(&self.code())
    }

    /// Whether this NAL starts with a slice header (slices, IDR slices and
    /// data partition A; partitions B and C start with a slice_id).
    pub fn has_slice_header(self) -> bool {
        matches!(self.code(), 1 | 2 | 5)
    }
}

/// The type of a NAL unit, checking the one bit every NAL must have clear.
pub fn nal_type(nal: &[u8]) -> Result<NalType, HeaderError> {
    let &header = nal.first().ok_or(HeaderError::Empty)?;
    if header & 0x80 != 0 {
        return Err(HeaderError::ForbiddenBit);
    }
    Ok(NalType::of(header))
}

/// Splits an Annex B byte stream into NAL units, incrementally.
///
/// Memory is one NAL unit (at most [`MAX_NAL_BYTES`]) plus the finished
/// units not yet taken with [`NalSplitter::next_nal`]: drain it after every
/// push. Bytes before the first start code (a stream joined midway) are
/// dropped; a NAL over the cap is reported once and dropped up to the next
/// start code, where the splitter carries on.
pub struct NalSplitter {
    /// The NAL unit being read, without its start code.
    nal: Vec<u8>,
    /// Zero bytes seen and not yet placed: they are either data or the
    /// start of the next start code, which only the byte after them tells.
    zeros: usize,
    /// A start code has been seen, so bytes are NAL data, not junk.
    synced: bool,
    /// The current NAL went over the cap: drop bytes up to the next start code.
    skipping: bool,
    limit: usize,
    ready: VecDeque<Result<Vec<u8>, AnnexBError>>,
}

impl Default for NalSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl NalSplitter {
    pub fn new() -> Self {
        Self::with_limit(MAX_NAL_BYTES)
    }

    fn with_limit(limit: usize) -> Self {
        NalSplitter {
            nal: Vec::new(),
            zeros: 0,
            synced: false,
            skipping: false,
            limit,
            ready: VecDeque::new(),
        }
    }

    /// More of the stream, in any chunking: a start code may be split
    /// across pushes.
    pub fn push(&mut self, mut bytes: &[u8]) {
        while let Some((&b, rest)) = bytes.split_first() {
            if b == 0 {
                self.zeros = self.zeros.saturating_add(1);
                bytes = rest;
            } else if b == 1 && self.zeros >= 2 {
                // 00 00 01, or 00 00 00 01: the extra zero (and any
                // trailing_zero_8bits) belongs to no NAL unit.
                self.end_nal();
                self.synced = true;
                bytes = rest;
            } else {
                // The zeros were data; so is the run up to the next zero,
                // which cannot hold a start code.
                self.put_zeros();
                let run = rest
                    .iter()
                    .position(|&x| x == 0)
                    .map_or(bytes.len(), |p| p + 1);
                let (data, rest) = bytes.split_at(run);
                self.put(data);
                bytes = rest;
            }
        }
    }

    /// The bytes so far end a NAL unit (a V4L2 buffer holds whole access
    /// units): hand out the last one. What follows must begin with a start
    /// code again.
    pub fn finish(&mut self) {
        self.end_nal();
        self.synced = false;
    }

    /// Bytes were lost: drop the NAL unit in progress and everything up to
    /// the next start code. NAL units already complete stay.
    pub fn resync(&mut self) {
        self.nal = Vec::new();
        self.zeros = 0;
        self.synced = false;
        self.skipping = false;
    }

    /// The next complete NAL unit (without start code, emulation
    /// prevention intact), or the error that took one's place.
    pub fn next_nal(&mut self) -> Option<Result<Vec<u8>, AnnexBError>> {
        self.ready.pop_front()
    }

    /// Bytes allocated for the NAL being read (tests check the bound).
    #[cfg(test)]
    pub(crate) fn holds(&self) -> usize {
        self.nal.capacity()
    }

    fn end_nal(&mut self) {
        // Zeros before a start code are trailing_zero_8bits: a NAL unit
        // never ends in 0x00.
        self.zeros = 0;
        let nal = std::mem::take(&mut self.nal);
        if !self.skipping && !nal.is_empty() {
            self.ready.push_back(Ok(nal));
        }
        self.skipping = false;
    }

    fn put_zeros(&mut self) {
        let n = std::mem::take(&mut self.zeros);
        if n > 0 && self.room_for(n) {
            self.nal.resize(self.nal.len() + n, 0);
        }
    }

    fn put(&mut self, data: &[u8]) {
        if self.room_for(data.len()) {
            self.nal.extend_from_slice(data);
        }
    }

    /// Whether `n` more bytes belong in the current NAL; over the cap, the
    /// NAL is given up (once reported) and its memory released.
    fn room_for(&mut self, n: usize) -> bool {
        if !self.synced || self.skipping {
            return false;
        }
        if self.nal.len().saturating_add(n) > self.limit {
            self.skipping = true;
            self.nal = Vec::new();
            self.ready
                .push_back(Err(AnnexBError::NalTooLarge { limit: self.limit }));
            return false;
        }
        self.reserve(n);
        true
    }

    /// Grows the buffer as `Vec` would (doubling), but never past the cap,
    /// so the cap bounds the allocation and not only the length.
    fn reserve(&mut self, n: usize) {
        let want = self.nal.len() + n;
        if want > self.nal.capacity() {
            let target = self
                .nal
                .capacity()
                .saturating_mul(2)
                .max(want)
                .min(self.limit);
            self.nal.reserve_exact(target - self.nal.len());
        }
    }
}
