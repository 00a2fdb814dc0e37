//! The sequence parameter set (7.3.2.1.1): profile, level, chroma format,
//! bit depths, the picture size after cropping, and the VUI's colour.

use super::*;

/// Picture width or height in macroblocks at most: level 6.2 bounds either
/// side to sqrt(8 * MaxFS) = 1055 macroblocks (16,880 pixels).
pub(super) const MAX_SIDE_MBS: u64 = 1_055;

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
    /// Bit depths less 8 (0 outside the high profiles): the recorder's
    /// `avcC` repeats them.
    pub bit_depth_luma_minus8: u8,
    pub bit_depth_chroma_minus8: u8,
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
pub(super) fn read_colour(r: &mut BitReader) -> Option<Colour> {
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
pub(super) fn has_chroma_info(profile_idc: u8) -> bool {
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
    let chroma = if has_chroma_info(profile_idc) {
        read_chroma_info(&mut r)?
    } else {
        ChromaInfo::default()
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
        chroma_array_type: if chroma.separate_planes {
            0
        } else {
            chroma.format_idc
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
        chroma_format_idc: chroma.format_idc,
        bit_depth_luma_minus8: chroma.luma_minus8,
        bit_depth_chroma_minus8: chroma.chroma_minus8,
        frame_mbs_only,
        width,
        height,
        colour,
    })
}

/// The high profiles' chroma format and bit depths; 4:2:0 and 8 bits
/// elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ChromaInfo {
    pub(super) format_idc: u32,
    pub(super) separate_planes: bool,
    pub(super) luma_minus8: u8,
    pub(super) chroma_minus8: u8,
}

impl Default for ChromaInfo {
    fn default() -> Self {
        Self {
            format_idc: 1,
            separate_planes: false,
            luma_minus8: 0,
            chroma_minus8: 0,
        }
    }
}

/// chroma_format_idc to the scaling matrices.
pub(super) fn read_chroma_info(r: &mut BitReader) -> Result<ChromaInfo, HeaderError> {
    let chroma_format_idc = r.ue_max("chroma_format_idc", 3)?;
    let separate_planes = chroma_format_idc == 3 && r.flag()?;
    let luma_minus8 = r.ue_max("bit_depth_luma_minus8", 6)? as u8;
    let chroma_minus8 = r.ue_max("bit_depth_chroma_minus8", 6)? as u8;
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
    Ok(ChromaInfo {
        format_idc: chroma_format_idc,
        separate_planes,
        luma_minus8,
        chroma_minus8,
    })
}

/// scaling_list() (7.3.2.1.1.1): delta-coded, and it ends early when a
/// delta brings the next scale to zero, so it must be walked, not skipped.
pub(super) fn skip_scaling_list(r: &mut BitReader, size: usize) -> Result<(), HeaderError> {
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

pub(super) fn skip_pic_order_cnt(r: &mut BitReader) -> Result<(), HeaderError> {
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
pub(super) struct Crop {
    pub(super) left: u64,
    pub(super) right: u64,
    pub(super) top: u64,
    pub(super) bottom: u64,
}

pub(super) fn read_crop(r: &mut BitReader) -> Result<Crop, HeaderError> {
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
pub(super) struct Geometry {
    pub(super) width_mbs: u64,
    /// Frame height in macroblocks (field streams: both fields).
    pub(super) height_mbs: u64,
    pub(super) chroma_array_type: u32,
    pub(super) frame_mbs_only: bool,
}

impl Geometry {
    /// The display size (7.4.2.1.1, CropUnitX/CropUnitY).
    pub(super) fn cropped(&self, crop: Crop) -> Result<(u32, u32), HeaderError> {
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
pub(super) fn cropped_side(coded: u64, unit: u64, a: u64, b: u64) -> Result<u32, HeaderError> {
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
