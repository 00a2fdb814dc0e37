//! Reading a header's bits: fixed-width fields and exp-Golomb codes, the
//! emulation-prevention bytes skipped.

use super::*;

/// Reads an RBSP bit by bit from escaped NAL bytes (the payload after the
/// NAL header byte), skipping emulation-prevention bytes (00 00 03) on the
/// way: NAL units stay as the camera wrote them, and no copy is made.
/// Every read is bounds-checked; reading past the end is an error.
pub struct BitReader<'a> {
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
    /// Zero bytes just read, to recognise an emulation-prevention byte.
    pub(super) zeros: u8,
    pub(super) byte: u8,
    pub(super) bits_left: u8,
}

impl<'a> BitReader<'a> {
    pub fn new(escaped: &'a [u8]) -> Self {
        BitReader {
            data: escaped,
            pos: 0,
            zeros: 0,
            byte: 0,
            bits_left: 0,
        }
    }

    pub(super) fn load(&mut self) -> Result<(), HeaderError> {
        let mut b = *self.data.get(self.pos).ok_or(HeaderError::Truncated)?;
        if self.zeros >= 2 && b == 3 {
            self.pos += 1;
            self.zeros = 0;
            b = *self.data.get(self.pos).ok_or(HeaderError::Truncated)?;
        }
        self.zeros = if b == 0 {
            self.zeros.saturating_add(1)
        } else {
            0
        };
        self.pos += 1;
        self.byte = b;
        self.bits_left = 8;
        Ok(())
    }

    /// u(1).
    pub fn flag(&mut self) -> Result<bool, HeaderError> {
        if self.bits_left == 0 {
            self.load()?;
        }
        self.bits_left -= 1;
        Ok((self.byte >> self.bits_left) & 1 == 1)
    }

    /// u(n), n at most 32.
    pub fn bits(&mut self, n: u32) -> Result<u32, HeaderError> {
        let mut v: u64 = 0;
        for _ in 0..n.min(32) {
            v = (v << 1) | self.flag()? as u64;
        }
        u32::try_from(v).map_err(|_| HeaderError::ExpGolombTooLong)
    }

    /// ue(v): unsigned exp-Golomb, up to 2^32 - 2.
    pub fn ue(&mut self) -> Result<u32, HeaderError> {
        let mut zeros = 0;
        while !self.flag()? {
            zeros += 1;
            if zeros > 31 {
                return Err(HeaderError::ExpGolombTooLong);
            }
        }
        let v = (1u64 << zeros) - 1 + self.bits(zeros)? as u64;
        u32::try_from(v).map_err(|_| HeaderError::ExpGolombTooLong)
    }

    /// se(v): signed exp-Golomb (1, -1, 2, -2, ... for 1, 2, 3, 4, ...).
    pub fn se(&mut self) -> Result<i32, HeaderError> {
        let k = self.ue()? as i64;
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        i32::try_from(v).map_err(|_| HeaderError::ExpGolombTooLong)
    }

    /// ue(v) that must be at most `max`.
    pub(super) fn ue_max(&mut self, field: &'static str, max: u32) -> Result<u32, HeaderError> {
        let v = self.ue()?;
        if v > max {
            return Err(HeaderError::OutOfRange {
                field,
                value: v as i64,
            });
        }
        Ok(v)
    }
}
