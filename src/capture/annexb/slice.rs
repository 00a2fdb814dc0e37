//! Slice headers (7.3.3), as far as the slice type, and where one access
//! unit ends and the next begins (7.4.1.2.4).

use super::*;

/// slice_type (Table 7-6); 5-9 are the same types with the promise that
/// every slice of the picture has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SliceType {
    P,
    B,
    I,
    Sp,
    Si,
}

/// The start of a slice header: all passthrough reads of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceHeader {
    pub first_mb_in_slice: u32,
    pub slice_type: SliceType,
}

/// Reads first_mb_in_slice and slice_type from a slice NAL unit (types 1,
/// 2 or 5, header byte included). Neither needs the SPS or PPS.
pub fn parse_slice_header(nal: &[u8]) -> Result<SliceHeader, HeaderError> {
    let kind = nal_type(nal)?;
    if !kind.has_slice_header() {
        return Err(HeaderError::WrongType {
            expected: 1,
            got: kind.code(),
        });
    }
    let mut r = BitReader::new(nal.get(1..).unwrap_or_default());
    let first_mb_in_slice = r.ue()?;
    let slice_type = match r.ue_max("slice_type", 9)? % 5 {
        0 => SliceType::P,
        1 => SliceType::B,
        2 => SliceType::I,
        3 => SliceType::Sp,
        _ => SliceType::Si,
    };
    Ok(SliceHeader {
        first_mb_in_slice,
        slice_type,
    })
}

/// Finds where access units begin in a sequence of NAL units: 7.4.1.2.3,
/// simplified for cameras. After a picture's slices, an AUD, SPS, PPS, SEI
/// (or types 14-18) opens the next access unit, and so does a slice that
/// starts again at macroblock 0. The finer rules (frame_num, pps id,
/// nal_ref_idc, POC changes between slices) only matter for streams whose
/// pictures lose their first slice or reorder slices (ASO), which no camera
/// writes.
#[derive(Debug, Default)]
pub struct AuBoundary {
    /// The current access unit has a slice already.
    pub(super) vcl_seen: bool,
}

impl AuBoundary {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a NAL of `kind` (with `slice`, its header, when it has one)
    /// opens a new access unit; call it for every NAL, in order.
    pub fn starts_new(&mut self, kind: NalType, slice: Option<&SliceHeader>) -> bool {
        let opens = self.vcl_seen
            && match kind {
                NalType::Aud | NalType::Sps | NalType::Pps | NalType::Sei => true,
                NalType::Other(14..=18) => true,
                k if k.has_slice_header() => slice.is_some_and(|s| s.first_mb_in_slice == 0),
                _ => false,
            };
        if opens {
            self.vcl_seen = false;
        }
        if kind.is_vcl() {
            self.vcl_seen = true;
        }
        opens
    }

    /// The current access unit ended (a buffer boundary): the next NAL
    /// belongs to a new one.
    pub fn reset(&mut self) {
        self.vcl_seen = false;
    }
}
