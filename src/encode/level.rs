//! H.264 level from picture size and rate, and the SDP `profile-level-id`.
//!
//! The answer must advertise exactly the profile the encoder emits
//! (constrained baseline, 42e0xx) and a level no lower than the stream
//! needs, or strict decoders (and str0m's profile match) refuse it. We pick
//! the level here, tell the encoder to use it, and check the SPS it writes.

/// Levels from Table A-1 of H.264: (level_idc, max macroblocks per frame,
/// max macroblocks per second). Level 1b is left out: we never need it.
const LEVELS: [(u8, u32, u32); 15] = [
    (10, 99, 1_485),
    (11, 396, 3_000),
    (12, 396, 6_000),
    (13, 396, 11_880),
    (20, 396, 11_880),
    (21, 792, 19_800),
    (22, 1_620, 20_250),
    (30, 1_620, 40_500),
    (31, 3_600, 108_000),
    (32, 5_120, 216_000),
    (40, 8_192, 245_760),
    (41, 8_192, 245_760),
    (42, 8_704, 522_240),
    (50, 22_080, 589_824),
    (51, 36_864, 983_040),
];

/// Level 5.2 (the largest openh264 encodes) for anything beyond the table.
const LEVEL_MAX: (u8, u32, u32) = (52, 36_864, 2_073_600);

/// The profile_idc and constraint flags of constrained baseline.
const CONSTRAINED_BASELINE: u32 = 0x0042_e000;

/// The lowest level that carries `width`x`height` at `fps`, or `None` when
/// even level 5.2 cannot.
pub fn level_idc(width: u32, height: u32, fps: u32) -> Option<u8> {
    let mbs = width.div_ceil(16) * height.div_ceil(16);
    let rate = mbs.saturating_mul(fps);
    LEVELS
        .iter()
        .chain(std::iter::once(&LEVEL_MAX))
        .find(|&&(_, max_fs, max_rate)| mbs <= max_fs && rate <= max_rate)
        // Frame width is also bounded by sqrt(8 * MaxFS) macroblocks.
        .filter(|&&(_, max_fs, _)| {
            let limit = ((8 * max_fs) as f64).sqrt() as u32;
            width.div_ceil(16) <= limit && height.div_ceil(16) <= limit
        })
        .map(|&(idc, _, _)| idc)
}

/// `profile-level-id` for constrained baseline at this level, e.g. 0x42e01f.
pub fn profile_level_id(level_idc: u8) -> u32 {
    CONSTRAINED_BASELINE | level_idc as u32
}

/// The matching openh264 level.
pub fn openh264_level(level_idc: u8) -> openh264::encoder::Level {
    use openh264::encoder::Level::*;
    match level_idc {
        10 => Level_1_0,
        11 => Level_1_1,
        12 => Level_1_2,
        13 => Level_1_3,
        20 => Level_2_0,
        21 => Level_2_1,
        22 => Level_2_2,
        30 => Level_3_0,
        31 => Level_3_1,
        32 => Level_3_2,
        40 => Level_4_0,
        41 => Level_4_1,
        42 => Level_4_2,
        50 => Level_5_0,
        51 => Level_5_1,
        _ => Level_5_2,
    }
}

/// profile_idc, constraint-flag byte and level_idc of the first SPS in an
/// Annex-B stream.
pub fn sps_profile_level(annexb: &[u8]) -> Option<(u8, u8, u8)> {
    nal_units(annexb)
        .find(|nal| nal.first().map(|b| b & 0x1f) == Some(7))
        .and_then(|sps| (sps.len() >= 4).then(|| (sps[1], sps[2], sps[3])))
}

/// Whether an SPS's profile is compatible with what we advertise: profile 66
/// with constraint_set1 (constrained baseline), at or below our level.
pub fn sps_matches(sps: (u8, u8, u8), level_idc: u8) -> bool {
    let (profile, flags, level) = sps;
    profile == 66 && flags & 0x40 != 0 && level <= level_idc
}

/// The `profile-level-id` an SPS really stands for, when it is constrained
/// baseline (profile 66 with constraint_set1): what the SDP must say. The
/// level is the SPS's own, so a hardware encoder that picks a higher level
/// than asked is advertised truthfully.
pub fn sps_profile_level_id(sps: (u8, u8, u8)) -> Option<u32> {
    let (profile, flags, level) = sps;
    (profile == 66 && flags & 0x40 != 0).then_some(CONSTRAINED_BASELINE | level as u32)
}

/// An H.264 profile as SDP negotiation sees it (RFC 6184 section 8.1,
/// table 5): several profile_idc and constraint-flag combinations name the
/// same profile, so two `profile-level-id`s are compared by this, not by
/// their bytes. A camera's passthrough SPS may say 42c0xx where a browser
/// offers 42e0xx: both are constrained baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H264Profile {
    ConstrainedBaseline,
    Baseline,
    Main,
    Extended,
    ConstrainedHigh,
    High,
    PredictiveHigh444,
}

/// (profile, profile_idc, constraint byte pattern from constraint_set0
/// down to the four reserved zero bits; `x` is either).
const PROFILES: [(H264Profile, u8, &[u8; 8]); 10] = [
    (H264Profile::ConstrainedBaseline, 0x42, b"x1xx0000"),
    (H264Profile::ConstrainedBaseline, 0x4d, b"1xxx0000"),
    (H264Profile::ConstrainedBaseline, 0x58, b"11xx0000"),
    (H264Profile::Baseline, 0x42, b"x0xx0000"),
    (H264Profile::Baseline, 0x58, b"10xx0000"),
    (H264Profile::Main, 0x4d, b"0x0x0000"),
    (H264Profile::Extended, 0x58, b"00xx0000"),
    (H264Profile::High, 0x64, b"00000000"),
    (H264Profile::ConstrainedHigh, 0x64, b"00001100"),
    (H264Profile::PredictiveHigh444, 0xf4, b"00000000"),
];

/// The profile a `profile-level-id` stands for, if it is one of table 5's.
pub fn h264_profile(profile_level_id: u32) -> Option<H264Profile> {
    let idc = (profile_level_id >> 16) as u8;
    let flags = (profile_level_id >> 8) as u8;
    PROFILES
        .iter()
        .find(|(_, i, pattern)| {
            *i == idc
                && pattern.iter().enumerate().all(|(bit, want)| {
                    let set = flags & (0x80 >> bit) != 0;
                    match want {
                        b'1' => set,
                        b'0' => !set,
                        _ => true,
                    }
                })
        })
        .map(|(p, _, _)| *p)
}

/// The NAL units of an Annex-B stream (kept beside the frames they cut).
pub use crate::frame::nal_units;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_sizes() {
        assert_eq!(level_idc(1280, 720, 30), Some(31));
        assert_eq!(profile_level_id(31), 0x42e01f);
        assert_eq!(level_idc(640, 480, 30), Some(30));
        assert_eq!(level_idc(640, 360, 30), Some(30));
        assert_eq!(level_idc(320, 240, 30), Some(13));
        assert_eq!(level_idc(1280, 720, 60), Some(32));
        assert_eq!(level_idc(1920, 1080, 30), Some(40));
        assert_eq!(level_idc(176, 144, 15), Some(10));
        assert_eq!(level_idc(8192, 8192, 60), None);
    }

    #[test]
    fn profiles_are_compared_as_rfc_6184_names_them() {
        use H264Profile::*;
        assert_eq!(h264_profile(0x42e01f), Some(ConstrainedBaseline));
        assert_eq!(
            h264_profile(0x42c01f),
            Some(ConstrainedBaseline),
            "a camera's CB"
        );
        assert_eq!(h264_profile(0x4d801f), Some(ConstrainedBaseline));
        assert_eq!(h264_profile(0x42001f), Some(Baseline));
        assert_eq!(h264_profile(0x4d001f), Some(Main));
        assert_eq!(
            h264_profile(0x4d4028),
            Some(Main),
            "set1 on Main is still Main"
        );
        assert_eq!(h264_profile(0x640028), Some(High));
        assert_eq!(h264_profile(0x640c1f), Some(ConstrainedHigh));
        assert_eq!(h264_profile(0xf4001f), Some(PredictiveHigh444));
        assert_eq!(h264_profile(0x6e001f), None, "High 10 is not for WebRTC");
        assert_eq!(h264_profile(0x42e11f), None, "a reserved flag set");
    }

    #[test]
    fn finds_sps_in_annexb() {
        let stream = [
            0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0xaa, 0, 0, 0, 1, 0x68, 0xce, 0, 0, 1, 0x65, 1,
        ];
        let nals: Vec<&[u8]> = nal_units(&stream).collect();
        assert_eq!(nals.len(), 3);
        assert_eq!(nals[0], &[0x67, 0x42, 0xc0, 0x1f, 0xaa]);
        assert_eq!(nals[1], &[0x68, 0xce]);
        assert_eq!(sps_profile_level(&stream), Some((0x42, 0xc0, 0x1f)));
        assert!(sps_matches((0x42, 0xc0, 0x1f), 31));
        assert!(
            !sps_matches((0x42, 0x00, 0x1f), 31),
            "plain baseline is not CB"
        );
        assert!(!sps_matches((0x42, 0xc0, 0x20), 31), "level too high");
        assert_eq!(sps_profile_level(&[0, 0, 1, 0x65]), None);
        assert_eq!(sps_profile_level_id((0x42, 0xc0, 0x1f)), Some(0x42e01f));
        assert_eq!(sps_profile_level_id((0x42, 0xe0, 0x28)), Some(0x42e028));
        assert_eq!(sps_profile_level_id((0x42, 0x00, 0x1f)), None);
        assert_eq!(sps_profile_level_id((0x64, 0x00, 0x1f)), None, "high");
    }
}
