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

/// The largest NAL unit the splitter holds. A 1080p intra slice is well
/// under 1 MiB; anything near this is a broken stream, and holding it would
/// let one bad camera take the board's memory.
pub const MAX_NAL_BYTES: usize = 4 * 1024 * 1024;

/// Picture width or height in macroblocks at most: level 6.2 bounds either
/// side to sqrt(8 * MaxFS) = 1055 macroblocks (16,880 pixels).
const MAX_SIDE_MBS: u64 = 1_055;

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

/// Reads an RBSP bit by bit from escaped NAL bytes (the payload after the
/// NAL header byte), skipping emulation-prevention bytes (00 00 03) on the
/// way: NAL units stay as the camera wrote them, and no copy is made.
/// Every read is bounds-checked; reading past the end is an error.
pub struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Zero bytes just read, to recognise an emulation-prevention byte.
    zeros: u8,
    byte: u8,
    bits_left: u8,
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

    fn load(&mut self) -> Result<(), HeaderError> {
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
    fn ue_max(&mut self, field: &'static str, max: u32) -> Result<u32, HeaderError> {
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

/// What an SPS says about the stream: enough to advertise it and to know
/// its picture size. B-frames are not among it (an SPS allows them in any
/// profile above baseline); slice headers tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sps {
    pub profile_idc: u8,
    /// constraint_set0..5 flags and the two reserved bits, as one byte.
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub seq_parameter_set_id: u32,
    /// 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u32,
    /// Progressive frames only (no field or MBAFF coding).
    pub frame_mbs_only: bool,
    /// Display size: the coded macroblocks less the frame cropping.
    pub width: u32,
    pub height: u32,
    /// The colour the VUI says the pictures are in, if it says.
    pub colour: Option<Colour>,
}

/// The VUI's video signal type (E.2.1): range, and the colour description's
/// code points (1 BT.709, 5/6 BT.601, 2 unspecified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Colour {
    pub full_range: bool,
    pub primaries: u8,
    pub transfer: u8,
    pub matrix: u8,
}

/// The VUI's colour, when present; a VUI cut short says nothing.
fn read_colour(r: &mut BitReader) -> Option<Colour> {
    if !r.flag().ok()? {
        return None; // vui_parameters_present_flag
    }
    if r.flag().ok()? {
        // aspect_ratio_info_present_flag: aspect_ratio_idc, Extended_SAR's size.
        if r.bits(8).ok()? == 255 {
            r.bits(16).ok()?;
            r.bits(16).ok()?;
        }
    }
    if r.flag().ok()? {
        r.flag().ok()?; // overscan_appropriate_flag
    }
    if !r.flag().ok()? {
        return None; // video_signal_type_present_flag
    }
    r.bits(3).ok()?; // video_format
    let full_range = r.flag().ok()?;
    let (primaries, transfer, matrix) = if r.flag().ok()? {
        let mut byte = || r.bits(8).ok().map(|v| v as u8);
        (byte()?, byte()?, byte()?)
    } else {
        (2, 2, 2)
    };
    Some(Colour {
        full_range,
        primaries,
        transfer,
        matrix,
    })
}

impl Sps {
    /// The SDP `profile-level-id`: the three bytes as the SPS has them.
    pub fn profile_level_id(&self) -> u32 {
        (self.profile_idc as u32) << 16
            | (self.constraint_flags as u32) << 8
            | self.level_idc as u32
    }
}

/// Profiles whose SPS carries chroma format, bit depths and scaling
/// matrices (7.3.2.1.1).
fn has_chroma_info(profile_idc: u8) -> bool {
    matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    )
}

/// Parses an SPS NAL unit (header byte included) up to the frame cropping,
/// and the VUI's colour if it has one.
pub fn parse_sps(nal: &[u8]) -> Result<Sps, HeaderError> {
    let kind = nal_type(nal)?;
    if kind != NalType::Sps {
        return Err(HeaderError::WrongType {
            expected: 7,
            got: kind.code(),
        });
    }
    let mut r = BitReader::new(nal.get(1..).unwrap_or_default());
    let profile_idc = r.bits(8)? as u8;
    let constraint_flags = r.bits(8)? as u8;
    let level_idc = r.bits(8)? as u8;
    let seq_parameter_set_id = r.ue_max("seq_parameter_set_id", 31)?;
    let (chroma_format_idc, separate_planes) = if has_chroma_info(profile_idc) {
        read_chroma_info(&mut r)?
    } else {
        (1, false)
    };
    r.ue_max("log2_max_frame_num_minus4", 12)?;
    skip_pic_order_cnt(&mut r)?;
    r.ue()?; // max_num_ref_frames
    r.flag()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()? as u64 + 1;
    let height_map_units = r.ue()? as u64 + 1;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        r.flag()?; // mb_adaptive_frame_field_flag
    }
    r.flag()?; // direct_8x8_inference_flag
    let crop = read_crop(&mut r)?;
    let geometry = Geometry {
        width_mbs,
        height_mbs: height_map_units * if frame_mbs_only { 1 } else { 2 },
        chroma_array_type: if separate_planes {
            0
        } else {
            chroma_format_idc
        },
        frame_mbs_only,
    };
    let (width, height) = geometry.cropped(crop)?;
    let colour = read_colour(&mut r);
    Ok(Sps {
        profile_idc,
        constraint_flags,
        level_idc,
        seq_parameter_set_id,
        chroma_format_idc,
        frame_mbs_only,
        width,
        height,
        colour,
    })
}

/// chroma_format_idc to the scaling matrices; returns the chroma format
/// and separate_colour_plane_flag.
fn read_chroma_info(r: &mut BitReader) -> Result<(u32, bool), HeaderError> {
    let chroma_format_idc = r.ue_max("chroma_format_idc", 3)?;
    let separate_planes = chroma_format_idc == 3 && r.flag()?;
    r.ue_max("bit_depth_luma_minus8", 6)?;
    r.ue_max("bit_depth_chroma_minus8", 6)?;
    r.flag()?; // qpprime_y_zero_transform_bypass_flag
    if r.flag()? {
        // seq_scaling_matrix_present_flag: six 4x4 lists, then two 8x8
        // (six for 4:4:4).
        let lists = if chroma_format_idc == 3 { 12 } else { 8 };
        for i in 0..lists {
            if r.flag()? {
                skip_scaling_list(r, if i < 6 { 16 } else { 64 })?;
            }
        }
    }
    Ok((chroma_format_idc, separate_planes))
}

/// scaling_list() (7.3.2.1.1.1): delta-coded, and it ends early when a
/// delta brings the next scale to zero, so it must be walked, not skipped.
fn skip_scaling_list(r: &mut BitReader, size: usize) -> Result<(), HeaderError> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            if !(-128..=127).contains(&delta) {
                return Err(HeaderError::OutOfRange {
                    field: "delta_scale",
                    value: delta as i64,
                });
            }
            next = (last + delta + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

fn skip_pic_order_cnt(r: &mut BitReader) -> Result<(), HeaderError> {
    match r.ue_max("pic_order_cnt_type", 2)? {
        0 => {
            r.ue_max("log2_max_pic_order_cnt_lsb_minus4", 12)?;
        }
        1 => {
            r.flag()?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let cycle = r.ue_max("num_ref_frames_in_pic_order_cnt_cycle", 255)?;
            for _ in 0..cycle {
                r.se()?; // offset_for_ref_frame
            }
        }
        _ => {}
    }
    Ok(())
}

/// frame_crop_{left,right,top,bottom}_offset, in crop units.
#[derive(Default)]
struct Crop {
    left: u64,
    right: u64,
    top: u64,
    bottom: u64,
}

fn read_crop(r: &mut BitReader) -> Result<Crop, HeaderError> {
    if !r.flag()? {
        return Ok(Crop::default());
    }
    Ok(Crop {
        left: r.ue()? as u64,
        right: r.ue()? as u64,
        top: r.ue()? as u64,
        bottom: r.ue()? as u64,
    })
}

/// The coded frame size and what a crop unit is in it.
struct Geometry {
    width_mbs: u64,
    /// Frame height in macroblocks (field streams: both fields).
    height_mbs: u64,
    chroma_array_type: u32,
    frame_mbs_only: bool,
}

impl Geometry {
    /// The display size (7.4.2.1.1, CropUnitX/CropUnitY).
    fn cropped(&self, crop: Crop) -> Result<(u32, u32), HeaderError> {
        for (field, mbs) in [
            ("pic_width_in_mbs", self.width_mbs),
            ("frame_height_in_mbs", self.height_mbs),
        ] {
            if mbs > MAX_SIDE_MBS {
                return Err(HeaderError::OutOfRange {
                    field,
                    value: mbs as i64,
                });
            }
        }
        let fields = if self.frame_mbs_only { 1 } else { 2 };
        let (sub_w, sub_h) = match self.chroma_array_type {
            0 => (1, 1),
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let width = cropped_side(self.width_mbs * 16, sub_w, crop.left, crop.right)?;
        let height = cropped_side(self.height_mbs * 16, sub_h * fields, crop.top, crop.bottom)?;
        Ok((width, height))
    }
}

/// One side less its crop; the crop must leave at least one pixel.
fn cropped_side(coded: u64, unit: u64, a: u64, b: u64) -> Result<u32, HeaderError> {
    let crop = a.saturating_add(b).saturating_mul(unit);
    if crop >= coded {
        return Err(HeaderError::OutOfRange {
            field: "frame_crop_offset",
            value: i64::try_from(crop).unwrap_or(i64::MAX),
        });
    }
    u32::try_from(coded - crop).map_err(|_| HeaderError::OutOfRange {
        field: "picture size",
        value: i64::try_from(coded).unwrap_or(i64::MAX),
    })
}

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
    vcl_seen: bool,
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

/// What a camera's H.264 is, read off its first buffers when it opens: the
/// SDP must carry the stream's own profile-level-id before any viewer is
/// answered, and a stream with B-frames is refused at once (WebRTC plays
/// frames in the order they arrive).
///
/// `default()` takes V4L2 buffers (each ends a NAL unit);
/// [`H264Probe::for_stream`] takes reads of a pipe.
#[derive(Default)]
pub struct H264Probe {
    splitter: NalSplitter,
    sps: Option<Sps>,
    /// Slices seen after the SPS: a few, so B-frames (which follow the
    /// first I or P frame) show before the verdict.
    slices: usize,
    /// A bare byte stream (`rpicam-vid -o -`): a read may end anywhere, even
    /// inside a NAL unit or a start code, so nothing is finished at its end.
    stream: bool,
}

/// Slices the probe reads after the SPS before it says yes.
const PROBE_SLICES: usize = 8;

impl H264Probe {
    /// A probe for a bare byte stream in reads of any size: a NAL unit is
    /// read once the next start code shows it ended, so the verdict comes
    /// one NAL unit later than from whole buffers.
    pub fn for_stream() -> Self {
        H264Probe {
            stream: true,
            ..H264Probe::default()
        }
    }

    /// Feeds one buffer (a whole access unit; for a stream probe, any read).
    /// `Ok(Some(profile-level-id))` once the stream is known good,
    /// `Ok(None)` while it needs more, `Err` with the reason when it cannot
    /// be passed through.
    pub fn feed(&mut self, buffer: &[u8]) -> Result<Option<String>, String> {
        self.splitter.push(buffer);
        if !self.stream {
            self.splitter.finish();
        }
        while let Some(nal) = self.splitter.next_nal() {
            let Ok(nal) = nal else { continue };
            match nal_type(&nal) {
                Ok(NalType::Sps) => {
                    self.sps =
                        Some(parse_sps(&nal).map_err(|e| format!("its SPS is broken: {e}"))?);
                }
                Ok(kind) if kind.has_slice_header() && self.sps.is_some() => {
                    if let Ok(h) = parse_slice_header(&nal) {
                        if h.slice_type == SliceType::B {
                            return Err(
                                "it sends B-frames, which WebRTC cannot play in order; set the camera to \
                                 the baseline profile (or use --capture-format mjpeg or raw)"
                                    .into(),
                            );
                        }
                        self.slices += 1;
                    }
                }
                _ => {}
            }
        }
        Ok(match &self.sps {
            Some(sps) if self.slices >= PROBE_SLICES => {
                Some(format!("{:06x}", sps.profile_level_id()))
            }
            _ => None,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes RBSP bits, for hand-made headers.
    #[derive(Default)]
    pub(crate) struct BitWriter {
        bytes: Vec<u8>,
        bits: u32,
        n: u32,
    }

    impl BitWriter {
        pub fn u(&mut self, n: u32, v: u32) -> &mut Self {
            for i in (0..n).rev() {
                self.bits = (self.bits << 1) | ((v >> i) & 1);
                self.n += 1;
                if self.n == 8 {
                    self.bytes.push(self.bits as u8);
                    (self.bits, self.n) = (0, 0);
                }
            }
            self
        }
        pub fn ue(&mut self, v: u32) -> &mut Self {
            let x = v as u64 + 1;
            let len = 64 - x.leading_zeros();
            self.u(len - 1, 0);
            for i in (0..len).rev() {
                self.u(1, ((x >> i) & 1) as u32);
            }
            self
        }
        pub fn se(&mut self, v: i32) -> &mut Self {
            let k = if v > 0 {
                2 * v as u32 - 1
            } else {
                2 * v.unsigned_abs()
            };
            self.ue(k)
        }
        /// rbsp_trailing_bits, then emulation prevention: a NAL payload.
        pub fn nal(&mut self, header: u8) -> Vec<u8> {
            self.u(1, 1);
            while self.n != 0 {
                self.u(1, 0);
            }
            let mut out = vec![header];
            let mut zeros = 0;
            for &b in &self.bytes {
                if zeros >= 2 && b <= 3 {
                    out.push(3);
                    zeros = 0;
                }
                out.push(b);
                zeros = if b == 0 { zeros + 1 } else { 0 };
            }
            out
        }
    }

    fn split(stream: &[u8], chunks: &[usize]) -> Vec<Result<Vec<u8>, AnnexBError>> {
        let mut s = NalSplitter::new();
        let mut out = Vec::new();
        let mut rest = stream;
        for &c in chunks.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (a, b) = rest.split_at(c.clamp(1, rest.len()));
            s.push(a);
            rest = b;
            out.extend(std::iter::from_fn(|| s.next_nal()));
        }
        s.finish();
        out.extend(std::iter::from_fn(|| s.next_nal()));
        out
    }

    #[test]
    fn splits_three_and_four_byte_start_codes_in_any_chunking() {
        let stream = [
            0xde, 0xad, 0, 0, // junk before the first start code
            0, 0, 0, 1, 0x67, 0x42, 0, 3, 0, 0, 3, 1, // emulation prevention kept
            0, 0, 1, 0x68, 0xce, 0, 0, 0, // trailing zero bits dropped
            0, 0, 1, 0x65, 0x88, 0, 0x84,
        ];
        let want: Vec<Result<Vec<u8>, AnnexBError>> = vec![
            Ok(vec![0x67, 0x42, 0, 3, 0, 0, 3, 1]),
            Ok(vec![0x68, 0xce]),
            Ok(vec![0x65, 0x88, 0, 0x84]),
        ];
        for chunk in 1..=stream.len() {
            assert_eq!(split(&stream, &[chunk]), want, "chunks of {chunk}");
        }
        assert_eq!(split(&stream, &[3, 1, 4, 1, 5, 9, 2, 6]), want);
    }

    #[test]
    fn a_nal_ends_only_when_the_next_start_code_or_finish_proves_it() {
        let mut s = NalSplitter::new();
        s.push(&[0, 0, 0, 1, 0x65, 0xaa, 0, 0]);
        assert_eq!(s.next_nal(), None, "00 00 could still be data");
        s.push(&[0]);
        assert_eq!(s.next_nal(), None);
        s.push(&[1, 0x41]);
        assert_eq!(s.next_nal(), Some(Ok(vec![0x65, 0xaa])));
        assert_eq!(s.next_nal(), None);
        s.finish();
        assert_eq!(s.next_nal(), Some(Ok(vec![0x41])));
        // After a buffer boundary, bytes before a start code are junk.
        s.push(&[0x41, 0x42, 0, 0, 1, 0x06, 5]);
        s.finish();
        assert_eq!(s.next_nal(), Some(Ok(vec![0x06, 5])));
        assert_eq!(s.next_nal(), None);
    }

    #[test]
    fn resync_drops_the_nal_in_progress() {
        let mut s = NalSplitter::new();
        s.push(&[0, 0, 1, 0x41, 0xaa, 0, 0, 1, 0x41, 0xbb, 0, 0]);
        s.resync();
        s.push(&[1, 0x41, 0xcc, 0, 0, 1, 0x41, 0xdd]);
        s.finish();
        let got: Vec<_> = std::iter::from_fn(|| s.next_nal()).collect();
        assert_eq!(got, vec![Ok(vec![0x41, 0xaa]), Ok(vec![0x41, 0xdd])]);
    }

    #[test]
    fn a_nal_over_the_cap_is_an_error_and_the_next_one_is_found() {
        let mut s = NalSplitter::new();
        s.push(&[0, 0, 0, 1, 0x65]);
        let big = vec![0xaa; 64 * 1024];
        for _ in 0..(5 * 1024 * 1024 / big.len()) {
            s.push(&big);
            assert!(s.nal.capacity() <= MAX_NAL_BYTES, "memory stays bounded");
        }
        s.push(&[0, 0, 1, 0x41, 0x9a, 0, 0, 1, 0x41, 0x9b]);
        s.finish();
        let got: Vec<_> = std::iter::from_fn(|| s.next_nal()).collect();
        assert_eq!(
            got,
            vec![
                Err(AnnexBError::NalTooLarge {
                    limit: MAX_NAL_BYTES
                }),
                Ok(vec![0x41, 0x9a]),
                Ok(vec![0x41, 0x9b]),
            ]
        );
    }

    #[test]
    fn zeros_count_toward_the_cap() {
        let mut s = NalSplitter::with_limit(8);
        s.push(&[0, 0, 1, 0x65]);
        s.push(&[0; 100]);
        s.push(&[7, 0, 0, 1, 0x41]);
        s.finish();
        assert_eq!(
            s.next_nal(),
            Some(Err(AnnexBError::NalTooLarge { limit: 8 }))
        );
        assert_eq!(s.next_nal(), Some(Ok(vec![0x41])));
    }

    #[test]
    fn the_bit_reader_skips_emulation_prevention_and_stops_at_the_end() {
        // 00 00 03 01: the 03 is not data.
        let mut r = BitReader::new(&[0, 0, 3, 1]);
        assert_eq!(r.bits(24).unwrap(), 1);
        assert_eq!(r.flag(), Err(HeaderError::Truncated));
        let mut w = BitWriter::default();
        w.ue(0)
            .ue(1)
            .ue(2)
            .ue(254)
            .se(1)
            .se(-1)
            .se(-300)
            .ue(u32::MAX - 1);
        let nal = w.nal(0x07);
        let mut r = BitReader::new(&nal[1..]);
        assert_eq!(r.ue().unwrap(), 0);
        assert_eq!(r.ue().unwrap(), 1);
        assert_eq!(r.ue().unwrap(), 2);
        assert_eq!(r.ue().unwrap(), 254);
        assert_eq!(r.se().unwrap(), 1);
        assert_eq!(r.se().unwrap(), -1);
        assert_eq!(r.se().unwrap(), -300);
        assert_eq!(r.ue().unwrap(), u32::MAX - 1);
        // 33 leading zeros: no ue(v) is that long.
        let mut r = BitReader::new(&[0, 0, 0, 0, 0, 0x80]);
        assert_eq!(r.ue(), Err(HeaderError::ExpGolombTooLong));
        let mut r = BitReader::new(&[0x00]);
        assert_eq!(r.ue(), Err(HeaderError::Truncated));
    }

    /// A High-profile SPS with everything before the size that baseline
    /// lacks: 4:2:0 with a scaling matrix (one list ended early by a zero
    /// scale, one full), POC type 1 with a cycle, fields, and cropping.
    fn high_sps(chroma: u32, lists: &[bool]) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.u(8, 100).u(8, 0).u(8, 40).ue(0);
        w.ue(chroma);
        if chroma == 3 {
            w.u(1, 0); // separate_colour_plane_flag
        }
        w.ue(2).ue(2).u(1, 0); // 10-bit, no bypass
        w.u(1, 1); // seq_scaling_matrix_present_flag
        for (i, &present) in lists.iter().enumerate() {
            w.u(1, present as u32);
            if present {
                let size = if i < 6 { 16 } else { 64 };
                if i % 2 == 0 {
                    // Brings next scale to 0 at once: the list ends.
                    w.se(-8);
                } else {
                    for j in 0..size {
                        w.se(if j % 2 == 0 { 5 } else { -3 });
                    }
                }
            }
        }
        w.ue(0); // log2_max_frame_num_minus4
        w.ue(1).u(1, 0).se(-2).se(3).ue(2).se(1).se(-1); // POC type 1
        w.ue(4).u(1, 0); // max_num_ref_frames, gaps
        w.ue(119).ue(33); // 1920 wide, 34 map units = 68 MB rows as fields
        w.u(1, 0).u(1, 1); // frame_mbs_only = 0, mb_adaptive_frame_field
        w.u(1, 1); // direct_8x8_inference
        w.u(1, 1).ue(0).ue(0).ue(0).ue(2); // crop bottom 2 units of 4 rows
        w.u(1, 0); // no VUI
        w.nal(0x67)
    }

    #[test]
    fn openh264_sps_sizes_with_and_without_cropping() {
        use crate::encode::VideoEncoder;
        use crate::encode::openh264::OpenH264;
        // 720 is 45 macroblock rows exactly; 360, 1080 and 1366 need cropping.
        for (w, h) in [(1280, 720), (640, 360), (1920, 1080), (1366, 768)] {
            let settings = crate::encode::EncoderSettings {
                width: w,
                height: h,
                fps: 30,
                bitrate_kbps: 1000,
                threads: 1,
                slice_bytes: crate::encode::DEFAULT_SLICE_BYTES,
            };
            let mut enc = OpenH264::new(settings).unwrap();
            let black = crate::frame::RawFrame::black(w as usize, h as usize);
            let idr = enc.encode(&black, true).unwrap().unwrap();
            let nal = crate::encode::level::nal_units(&idr.data)
                .find(|n| n[0] & 0x1f == 7)
                .expect("an SPS");
            let sps = parse_sps(nal).unwrap();
            assert_eq!((sps.width, sps.height), (w, h));
            assert_eq!((sps.profile_idc, sps.chroma_format_idc), (66, 1));
            assert!(sps.frame_mbs_only);
            let level = crate::encode::level::sps_profile_level(&idr.data);
            assert_eq!(
                level,
                Some((sps.profile_idc, sps.constraint_flags, sps.level_idc))
            );
        }
    }

    #[test]
    fn a_high_profile_sps_with_scaling_matrices_gives_its_size() {
        let lists = [true, true, false, true, false, false, true, true];
        let sps = parse_sps(&high_sps(1, &lists)).unwrap();
        assert_eq!(
            sps,
            Sps {
                profile_idc: 100,
                constraint_flags: 0,
                level_idc: 40,
                seq_parameter_set_id: 0,
                chroma_format_idc: 1,
                frame_mbs_only: false,
                // 68 MB rows = 1088, less 2 crop units of 2 * 2 rows.
                width: 1920,
                height: 1080,
                colour: None,
            }
        );
        assert_eq!(sps.profile_level_id(), 0x640028);
        // 4:4:4 has twelve lists, and a crop unit of 1 x 2 (fields).
        let sps = parse_sps(&high_sps(3, &[true; 12])).unwrap();
        assert_eq!(
            (sps.chroma_format_idc, sps.width, sps.height),
            (3, 1920, 1084)
        );
    }

    #[test]
    fn x264s_high_profile_1080p_sps() {
        // As libx264 writes it (High 4.0, VUI): a real SPS with the fields
        // baseline lacks, and emulation prevention in its VUI.
        let sps = [
            0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00,
            0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc6, 0x58,
        ];
        let sps = parse_sps(&sps).unwrap();
        assert_eq!((sps.width, sps.height), (1920, 1080));
        assert_eq!((sps.chroma_format_idc, sps.frame_mbs_only), (1, true));
        assert_eq!(sps.profile_level_id(), 0x640028);
    }

    #[test]
    fn a_broken_sps_is_an_error_at_every_length() {
        let sps = high_sps(1, &[true; 8]);
        for len in 0..sps.len() - 1 {
            assert!(parse_sps(&sps[..len]).is_err(), "cut at {len}");
        }
        assert_eq!(
            parse_sps(&[0x68, 0x42]),
            Err(HeaderError::WrongType {
                expected: 7,
                got: 8
            })
        );
        assert_eq!(parse_sps(&[0xe7, 0x42]), Err(HeaderError::ForbiddenBit));
        // A crop bigger than the picture.
        let mut w = BitWriter::default();
        w.u(8, 66)
            .u(8, 0xc0)
            .u(8, 30)
            .ue(0)
            .ue(0)
            .ue(2)
            .ue(1)
            .u(1, 0);
        w.ue(0)
            .ue(0)
            .u(1, 1)
            .u(1, 1)
            .u(1, 1)
            .ue(4)
            .ue(4)
            .ue(0)
            .ue(0);
        assert!(matches!(
            parse_sps(&w.nal(0x67)),
            Err(HeaderError::OutOfRange {
                field: "frame_crop_offset",
                ..
            })
        ));
    }

    #[test]
    fn slice_headers_give_first_mb_and_type() {
        let mut w = BitWriter::default();
        w.ue(0).ue(6).ue(0); // first_mb 0, B (all slices), pps 0
        let b = w.nal(0x01);
        assert_eq!(
            parse_slice_header(&b).unwrap(),
            SliceHeader {
                first_mb_in_slice: 0,
                slice_type: SliceType::B
            }
        );
        let mut w = BitWriter::default();
        w.ue(396).ue(7).ue(0);
        let i = parse_slice_header(&w.nal(0x65)).unwrap();
        assert_eq!((i.first_mb_in_slice, i.slice_type), (396, SliceType::I));
        let mut w = BitWriter::default();
        w.ue(0).ue(10);
        assert!(parse_slice_header(&w.nal(0x41)).is_err(), "slice_type 10");
        assert!(parse_slice_header(&[0x41]).is_err());
        assert!(parse_slice_header(&[0x67, 0x80]).is_err());
    }

    #[test]
    fn access_units_begin_after_slices() {
        let mut b = AuBoundary::new();
        let at = |mb| SliceHeader {
            first_mb_in_slice: mb,
            slice_type: SliceType::P,
        };
        assert!(!b.starts_new(NalType::Sps, None), "nothing before it");
        assert!(!b.starts_new(NalType::Pps, None));
        assert!(!b.starts_new(NalType::Idr, Some(&at(0))));
        assert!(!b.starts_new(NalType::Idr, Some(&at(40))));
        assert!(b.starts_new(NalType::Slice, Some(&at(0))), "next picture");
        assert!(!b.starts_new(NalType::Slice, Some(&at(40))));
        assert!(b.starts_new(NalType::Aud, None));
        assert!(!b.starts_new(NalType::Sei, None), "same AU as the AUD");
        assert!(!b.starts_new(NalType::Slice, Some(&at(0))));
        assert!(b.starts_new(NalType::Sei, None));
        assert!(!b.starts_new(NalType::Slice, Some(&at(0))));
        assert!(!b.starts_new(NalType::Other(12), None), "filler stays");
        b.reset();
        assert!(
            !b.starts_new(NalType::Slice, Some(&at(0))),
            "after a buffer end"
        );
    }

    /// Annex B: each NAL behind a 4-byte start code.
    fn annex_b(nals: &[Vec<u8>]) -> Vec<u8> {
        nals.iter()
            .flat_map(|n| [&[0, 0, 0, 1][..], n].concat())
            .collect()
    }

    fn slice(kind: u8, first_mb: u32, slice_type: u32) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.ue(first_mb).ue(slice_type).ue(0).u(8, 0xa5);
        w.nal(kind)
    }

    /// Feeds `stream` in reads of `chunk` bytes until the probe decides.
    fn probe_stream(stream: &[u8], chunk: usize) -> Result<Option<String>, String> {
        let mut probe = H264Probe::for_stream();
        for piece in stream.chunks(chunk) {
            if let v @ (Ok(Some(_)) | Err(_)) = probe.feed(piece) {
                return v;
            }
        }
        Ok(None)
    }

    #[test]
    fn a_stream_probe_reads_a_pipe_cut_anywhere() {
        use crate::encode::VideoEncoder;
        use crate::encode::openh264::OpenH264;
        let settings = crate::encode::EncoderSettings {
            width: 640,
            height: 360,
            fps: 30,
            bitrate_kbps: 800,
            threads: 1,
            slice_bytes: crate::encode::DEFAULT_SLICE_BYTES,
        };
        let mut enc = OpenH264::new(settings).unwrap();
        let mut stream = Vec::new();
        let mut frame = crate::frame::RawFrame::black(640, 360);
        for n in 0..12u8 {
            frame.data[..640 * 8].fill(16 + n * 8);
            if let Some(f) = enc.encode(&frame, n == 0).unwrap() {
                stream.extend_from_slice(&f.data);
            }
        }
        let (profile, constraints, level) =
            crate::encode::level::sps_profile_level(&stream).expect("an SPS");
        let id = format!("{profile:02x}{constraints:02x}{level:02x}");
        assert!(id.starts_with("42"), "{id}");
        for chunk in [1, 2, 3, 5, 7, 64, 1000, 4096, 65536] {
            assert_eq!(
                probe_stream(&stream, chunk),
                Ok(Some(id.clone())),
                "reads of {chunk}"
            );
        }
    }

    #[test]
    fn a_stream_probe_waits_for_the_start_code_that_ends_a_nal() {
        let mut nals = vec![high_sps(1, &[false; 8])];
        nals.extend((0..PROBE_SLICES as u32).map(|i| slice(0x41, i * 10, 5)));
        let stream = annex_b(&nals);
        let mut probe = H264Probe::for_stream();
        assert_eq!(probe.feed(&stream), Ok(None), "the last slice may go on");
        assert_eq!(probe.feed(&[0, 0]), Ok(None));
        assert_eq!(probe.feed(&[0, 1]), Ok(Some("640028".into())));
        // Whole buffers are finished at their end: the same bytes suffice.
        assert_eq!(
            H264Probe::default().feed(&stream),
            Ok(Some("640028".into()))
        );
    }

    #[test]
    fn a_stream_probe_refuses_b_frames_in_any_chunking() {
        let nals = [
            high_sps(1, &[false; 8]),
            slice(0x65, 0, 7),
            slice(0x41, 0, 5),
            slice(0x01, 0, 6),
            slice(0x41, 0, 5),
        ];
        let stream = annex_b(&nals);
        for chunk in [1, 3, 8, stream.len()] {
            let verdict = probe_stream(&stream, chunk);
            assert!(
                verdict.as_ref().is_err_and(|e| e.contains("B-frames")),
                "reads of {chunk}: {verdict:?}"
            );
        }
    }
}
