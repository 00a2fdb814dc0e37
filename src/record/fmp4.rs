//! Fragmented MP4 (ISO BMFF, ISO/IEC 14496-12 and -15), write-only, for
//! recordings: one H.264 video track and optionally one Opus audio track.
//!
//! A file is an init segment, `ftyp` + `moov` (tracks, sample entries, empty
//! sample tables, `mvex`), then one `moof` + `mdat` pair per fragment of
//! about a second, appended as the recording goes. Nothing is ever rewritten,
//! so a power cut loses at most the fragment being written:
//! [`playable_len`] finds where the last whole fragment ends, and the
//! recovery cuts the file back to it.
//!
//! Only the file as a whole must start on a keyframe (its first video
//! sample); a fragment may start with any frame, since fragments are cut by
//! time, not by GOP.
//!
//! The boxes are written here rather than with a crate: it is about twenty
//! box types, all write-only, each a size, a type and a few big-endian
//! fields. The one reader is [`top_level_boxes`], which walks top-level
//! boxes only. [`annexb_to_sample`] and [`sps_size`] turn what the H.264
//! encoder hands out into what the boxes need (the SPS read by
//! `capture::annexb`, the one H.264 header parser).
//!
//! Times: video samples and decode times are in [`VIDEO_TIMESCALE`] ticks,
//! audio in [`AUDIO_TIMESCALE`] ticks (one Opus 20 ms frame is 960).

use crate::capture::annexb;

/// Ticks per second of the video track (the RTP clock of H.264, too).
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// Ticks per second of the audio track (Opus always decodes at 48 kHz).
pub const AUDIO_TIMESCALE: u32 = 48_000;
/// The video track's `track_ID`.
pub const VIDEO_TRACK: u32 = 1;
/// The audio track's `track_ID`.
pub const AUDIO_TRACK: u32 = 2;

/// The identity transformation of `mvhd` and `tkhd` (16.16 and 2.30 fixed point).
const UNITY_MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];
/// `sample_depends_on` = 2: depends on no other sample (a sync sample).
const SYNC_SAMPLE: u32 = 0x0200_0000;
/// `sample_depends_on` = 1 and `sample_is_non_sync_sample`.
const NON_SYNC_SAMPLE: u32 = 0x0101_0000;
/// `tfhd` flag: data offsets count from the first byte of the `moof`.
const DEFAULT_BASE_IS_MOOF: u32 = 0x0002_0000;
/// `trun` flags: data-offset, sample-duration, sample-size and sample-flags present.
const TRUN_FLAGS: u32 = 0x0000_0001 | 0x0000_0100 | 0x0000_0200 | 0x0000_0400;
/// The profiles whose `avcC` carries the chroma / bit depth trailer.
const AVCC_HIGH_PROFILES: [u8; 4] = [100, 110, 122, 144];

/// The video track of a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoTrack {
    pub width: u16,
    pub height: u16,
    /// The sequence parameter set: one NAL unit without its start code,
    /// header byte included.
    pub sps: Vec<u8>,
    /// The picture parameter set, the same way.
    pub pps: Vec<u8>,
}

impl VideoTrack {
    /// The track for these parameter sets, its size read from the SPS.
    /// None if the SPS does not parse.
    pub fn from_parameter_sets(sps: Vec<u8>, pps: Vec<u8>) -> Option<VideoTrack> {
        let (width, height) = sps_size(&sps)?;
        Some(VideoTrack {
            width,
            height,
            sps,
            pps,
        })
    }
}

/// The audio track of a recording: Opus, mono or stereo (channel mapping
/// family 0 allows no more than two channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioTrack {
    pub channels: u8,
    /// Samples (at 48 kHz) the decoder drops at the start, from the encoder.
    pub pre_skip: u16,
}

/// One sample of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// In the track's timescale.
    pub duration: u32,
    /// A sync sample (an IDR access unit); ignored for audio, where every
    /// sample is one.
    pub keyframe: bool,
    /// Already in MP4 form: 4-byte length-prefixed NAL units for video
    /// (see [`annexb_to_sample`]), the raw Opus packet for audio.
    pub data: Vec<u8>,
}

/// Consecutive samples of one track within a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// [`VIDEO_TRACK`] or [`AUDIO_TRACK`].
    pub track: u32,
    /// The decode time of the first sample, in the track's timescale.
    pub base_decode_time: u64,
    pub samples: Vec<Sample>,
}

/// The init segment: `ftyp` + `moov`, with one `trak` per track and the
/// `mvex` that announces fragments. Written once, at the start of a file.
pub fn init_segment(video: &VideoTrack, audio: Option<&AudioTrack>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    ftyp(&mut out);
    bx(&mut out, b"moov", |out| {
        let next_track_id = if audio.is_some() {
            AUDIO_TRACK + 1
        } else {
            VIDEO_TRACK + 1
        };
        mvhd(out, next_track_id);
        trak(out, TrackKind::Video(video));
        if let Some(audio) = audio {
            trak(out, TrackKind::Audio(audio));
        }
        bx(out, b"mvex", |out| {
            trex(out, VIDEO_TRACK);
            if audio.is_some() {
                trex(out, AUDIO_TRACK);
            }
        });
    });
    out
}

/// One fragment: a `moof` (sequence number `seq`, counted from 1, and one
/// `traf` per non-empty run) followed by one `mdat` holding the runs' data
/// in order. Empty runs are skipped; if every run is empty the fragment is
/// empty (no bytes).
///
/// # Panics
///
/// If the fragment would reach 2 GiB: `trun` data offsets are signed 32-bit
/// numbers. A one-second fragment is a few megabytes at most.
pub fn fragment(seq: u32, runs: &[Run]) -> Vec<u8> {
    let runs: Vec<&Run> = runs.iter().filter(|r| !r.samples.is_empty()).collect();
    if runs.is_empty() {
        return Vec::new();
    }
    let samples: usize = runs.iter().map(|r| r.samples.len()).sum();
    let data_len: usize = runs.iter().copied().map(run_data_len).sum();
    // moof header + mfhd, 64 bytes per traf besides its 12 per sample, mdat header.
    let bound = 24 + runs.len() * 64 + samples * 12 + 8 + data_len;
    assert!(
        bound <= i32::MAX as usize,
        "a fragment must stay under 2 GiB"
    );

    let mut out = Vec::with_capacity(bound);
    let mut offset_fields = Vec::with_capacity(runs.len());
    bx(&mut out, b"moof", |out| {
        full_box(out, b"mfhd", 0, 0, |out| out.put_u32(seq));
        for run in &runs {
            offset_fields.push(traf(out, run));
        }
    });
    // The data of run i starts after the moof, the mdat header and runs 0..i.
    let mut data_offset = out.len() + 8;
    for (run, field) in runs.iter().zip(offset_fields) {
        out[field..field + 4].copy_from_slice(&(data_offset as u32).to_be_bytes());
        data_offset += run_data_len(run);
    }
    bx(&mut out, b"mdat", |out| {
        for sample in runs.iter().flat_map(|r| &r.samples) {
            out.extend_from_slice(&sample.data);
        }
    });
    out
}

/// An access unit converted by [`annexb_to_sample`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// The sample data: each NAL unit as a 4-byte big-endian length and the
    /// NAL unit, parameter sets and access unit delimiters left out.
    pub data: Vec<u8>,
    /// The first SPS of the access unit, if any.
    pub sps: Option<Vec<u8>>,
    /// The first PPS of the access unit, if any.
    pub pps: Option<Vec<u8>>,
}

/// An Annex B access unit (NAL units after `00 00 01` or `00 00 00 01`
/// start codes) as MP4 sample data. SPS (type 7), PPS (8) and AUD (9) NAL
/// units are left out, since the parameter sets live in `avcC`; the first
/// SPS and PPS are returned so that the caller can build or check it.
/// Bytes before the first start code are ignored.
pub fn annexb_to_sample(au: &[u8]) -> Converted {
    let mut converted = Converted {
        data: Vec::with_capacity(au.len() + 16),
        sps: None,
        pps: None,
    };
    for nal in annexb_nal_units(au) {
        match nal[0] & 0x1F {
            7 => {
                converted.sps.get_or_insert_with(|| nal.to_vec());
            }
            8 => {
                converted.pps.get_or_insert_with(|| nal.to_vec());
            }
            9 => {}
            _ => {
                let Ok(len) = u32::try_from(nal.len()) else {
                    continue;
                };
                converted.data.put_u32(len);
                converted.data.extend_from_slice(nal);
            }
        }
    }
    converted
}

/// The picture size an SPS (one NAL unit, header byte included) describes,
/// cropping applied. None if it is not an SPS or does not parse; never
/// panics, whatever the input.
pub fn sps_size(sps: &[u8]) -> Option<(u16, u16)> {
    let sps = annexb::parse_sps(sps).ok()?;
    Some((
        u16::try_from(sps.width).ok()?,
        u16::try_from(sps.height).ok()?,
    ))
}

/// The whole top-level boxes at the start of `data`: (type, offset, size)
/// each, in order. Stops at the first box that is truncated or malformed:
/// a size under 8, a box past the end of `data`, or size 0 ("to the end of
/// the file", which a file being written cannot be trusted to mean).
/// Size 1 (a 64-bit largesize) is read.
pub fn top_level_boxes(data: &[u8]) -> Vec<([u8; 4], u64, u64)> {
    let mut boxes = Vec::new();
    let mut offset = 0;
    while let Some((kind, size)) = box_at(data, offset) {
        boxes.push((kind, offset as u64, size as u64));
        offset += size;
    }
    boxes
}

/// How much of `data` is a playable file: the init segment (`ftyp` ...
/// `moov`) and every fragment up to the last `moof` that is followed by its
/// whole `mdat`. 0 if the init segment itself is not whole. A file cut back
/// to this length after a power cut plays to its end.
pub fn playable_len(data: &[u8]) -> u64 {
    let boxes = top_level_boxes(data);
    if boxes.first().map(|b| b.0) != Some(*b"ftyp") {
        return 0;
    }
    let Some(moov) = boxes.iter().position(|b| b.0 == *b"moov") else {
        return 0;
    };
    let end = |b: &([u8; 4], u64, u64)| b.1 + b.2;
    let mut len = end(&boxes[moov]);
    for pair in boxes[moov + 1..].windows(2) {
        if pair[0].0 == *b"moof" && pair[1].0 == *b"mdat" {
            len = end(&pair[1]);
        }
    }
    len
}

// ---------------------------------------------------------------------------
// Box writing

/// Big-endian fields.
trait Put {
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_zeros(&mut self, n: usize);
}

impl Put for Vec<u8> {
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_zeros(&mut self, n: usize) {
        self.resize(self.len() + n, 0);
    }
}

/// A box: its size (patched once `body` has written the rest), its type,
/// its body.
fn bx(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.put_u32(0);
    out.extend_from_slice(kind);
    body(out);
    // Only an mdat could be large, and fragment() keeps it under 2 GiB.
    let size = u32::try_from(out.len() - start).expect("boxes stay under 4 GiB");
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// A full box: a box whose body starts with a version byte and 24 bits of flags.
fn full_box(
    out: &mut Vec<u8>,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    bx(out, kind, |out| {
        out.push(version);
        out.extend_from_slice(&flags.to_be_bytes()[1..]);
        body(out);
    });
}

fn put_matrix(out: &mut Vec<u8>) {
    for v in UNITY_MATRIX {
        out.put_u32(v);
    }
}

/// A length (u16) and the bytes, cut to 65535 if longer.
fn put_u16_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len().min(usize::from(u16::MAX));
    out.put_u16(len as u16);
    out.extend_from_slice(&bytes[..len]);
}

fn ftyp(out: &mut Vec<u8>) {
    bx(out, b"ftyp", |out| {
        out.extend_from_slice(b"isom");
        out.put_u32(0x200);
        for brand in [b"isom", b"iso6", b"avc1", b"mp41"] {
            out.extend_from_slice(brand);
        }
    });
}

fn mvhd(out: &mut Vec<u8>, next_track_id: u32) {
    full_box(out, b"mvhd", 0, 0, |out| {
        out.put_u32(0); // creation_time
        out.put_u32(0); // modification_time
        out.put_u32(1000); // timescale
        out.put_u32(0); // duration: unknown, the fragments tell
        out.put_u32(0x0001_0000); // rate 1.0
        out.put_u16(0x0100); // volume 1.0
        out.put_zeros(2 + 8); // reserved
        put_matrix(out);
        out.put_zeros(24); // pre_defined
        out.put_u32(next_track_id);
    });
}

/// The track a `trak` describes.
#[derive(Clone, Copy)]
enum TrackKind<'a> {
    Video(&'a VideoTrack),
    Audio(&'a AudioTrack),
}

impl TrackKind<'_> {
    fn id(self) -> u32 {
        match self {
            TrackKind::Video(_) => VIDEO_TRACK,
            TrackKind::Audio(_) => AUDIO_TRACK,
        }
    }

    fn timescale(self) -> u32 {
        match self {
            TrackKind::Video(_) => VIDEO_TIMESCALE,
            TrackKind::Audio(_) => AUDIO_TIMESCALE,
        }
    }
}

fn trak(out: &mut Vec<u8>, track: TrackKind) {
    bx(out, b"trak", |out| {
        tkhd(out, track);
        bx(out, b"mdia", |out| {
            mdhd(out, track.timescale());
            match track {
                TrackKind::Video(_) => hdlr(out, b"vide", "VideoHandler"),
                TrackKind::Audio(_) => hdlr(out, b"soun", "SoundHandler"),
            }
            bx(out, b"minf", |out| minf(out, track));
        });
    });
}

fn tkhd(out: &mut Vec<u8>, track: TrackKind) {
    let (volume, width, height) = match track {
        TrackKind::Video(v) => (0, v.width, v.height),
        TrackKind::Audio(_) => (0x0100, 0, 0),
    };
    // flags: track_enabled | track_in_movie
    full_box(out, b"tkhd", 0, 3, |out| {
        out.put_u32(0); // creation_time
        out.put_u32(0); // modification_time
        out.put_u32(track.id());
        out.put_u32(0); // reserved
        out.put_u32(0); // duration
        out.put_zeros(8); // reserved
        out.put_u16(0); // layer
        out.put_u16(0); // alternate_group
        out.put_u16(volume);
        out.put_u16(0); // reserved
        put_matrix(out);
        out.put_u32(u32::from(width) << 16);
        out.put_u32(u32::from(height) << 16);
    });
}

/// The language code "und", three 5-bit letters less 0x60.
const LANGUAGE_UND: u16 =
    ((b'u' as u16 - 0x60) << 10) | ((b'n' as u16 - 0x60) << 5) | (b'd' as u16 - 0x60);

fn mdhd(out: &mut Vec<u8>, timescale: u32) {
    full_box(out, b"mdhd", 0, 0, |out| {
        out.put_u32(0); // creation_time
        out.put_u32(0); // modification_time
        out.put_u32(timescale);
        out.put_u32(0); // duration
        out.put_u16(LANGUAGE_UND);
        out.put_u16(0); // pre_defined
    });
}

fn hdlr(out: &mut Vec<u8>, handler: &[u8; 4], name: &str) {
    full_box(out, b"hdlr", 0, 0, |out| {
        out.put_u32(0); // pre_defined
        out.extend_from_slice(handler);
        out.put_zeros(12); // reserved
        out.extend_from_slice(name.as_bytes());
        out.push(0);
    });
}

fn minf(out: &mut Vec<u8>, track: TrackKind) {
    match track {
        // graphicsmode and opcolor 0; flags 1 as the spec asks.
        TrackKind::Video(_) => full_box(out, b"vmhd", 0, 1, |out| out.put_zeros(8)),
        // balance and reserved.
        TrackKind::Audio(_) => full_box(out, b"smhd", 0, 0, |out| out.put_zeros(4)),
    }
    bx(out, b"dinf", |out| {
        full_box(out, b"dref", 0, 0, |out| {
            out.put_u32(1); // entry_count
            full_box(out, b"url ", 0, 1, |_| {}); // flags 1: the data is in this file
        });
    });
    bx(out, b"stbl", |out| {
        full_box(out, b"stsd", 0, 0, |out| {
            out.put_u32(1); // entry_count
            match track {
                TrackKind::Video(v) => avc1(out, v),
                TrackKind::Audio(a) => opus(out, a),
            }
        });
        // The samples are all in the fragments: empty tables.
        full_box(out, b"stts", 0, 0, |out| out.put_u32(0));
        full_box(out, b"stsc", 0, 0, |out| out.put_u32(0));
        full_box(out, b"stsz", 0, 0, |out| {
            out.put_u32(0); // sample_size
            out.put_u32(0); // sample_count
        });
        full_box(out, b"stco", 0, 0, |out| out.put_u32(0));
    });
}

fn avc1(out: &mut Vec<u8>, video: &VideoTrack) {
    bx(out, b"avc1", |out| {
        out.put_zeros(6); // reserved
        out.put_u16(1); // data_reference_index
        out.put_zeros(2 + 2 + 12); // pre_defined, reserved, pre_defined
        out.put_u16(video.width);
        out.put_u16(video.height);
        out.put_u32(0x0048_0000); // horizresolution 72 dpi
        out.put_u32(0x0048_0000); // vertresolution
        out.put_u32(0); // reserved
        out.put_u16(1); // frame_count
        put_compressor_name(out, b"rtcam");
        out.put_u16(0x0018); // depth
        out.put_u16(0xFFFF); // pre_defined = -1
        avcc(out, &video.sps, &video.pps);
    });
}

/// The 32-byte compressorname: a length byte, the name, zero padding.
fn put_compressor_name(out: &mut Vec<u8>, name: &[u8]) {
    let name = &name[..name.len().min(31)];
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.put_zeros(31 - name.len());
}

/// The AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1).
fn avcc(out: &mut Vec<u8>, sps: &[u8], pps: &[u8]) {
    let byte = |i: usize| sps.get(i).copied().unwrap_or(0);
    let profile = byte(1);
    bx(out, b"avcC", |out| {
        // version, profile, compatibility, level, 6 reserved bits + lengthSizeMinusOne 3,
        // 3 reserved bits + one SPS.
        out.extend_from_slice(&[1, profile, byte(2), byte(3), 0xFF, 0xE1]);
        put_u16_prefixed(out, sps);
        out.push(1); // numOfPictureParameterSets
        put_u16_prefixed(out, pps);
        if AVCC_HIGH_PROFILES.contains(&profile) {
            let (chroma, luma_depth, chroma_depth) =
                annexb::parse_sps(sps).map_or((1, 0, 0), |s| {
                    (
                        s.chroma_format_idc as u8,
                        s.bit_depth_luma_minus8,
                        s.bit_depth_chroma_minus8,
                    )
                });
            // Reserved bits set, then no SPS extensions.
            out.extend_from_slice(&[0xFC | chroma, 0xF8 | luma_depth, 0xF8 | chroma_depth, 0]);
        }
    });
}

/// The Opus sample entry ("Encapsulation of Opus in ISO Base Media File Format").
fn opus(out: &mut Vec<u8>, audio: &AudioTrack) {
    bx(out, b"Opus", |out| {
        out.put_zeros(6); // reserved
        out.put_u16(1); // data_reference_index
        out.put_zeros(8); // reserved
        out.put_u16(u16::from(audio.channels));
        out.put_u16(16); // samplesize
        out.put_u16(0); // pre_defined
        out.put_u16(0); // reserved
        out.put_u32(AUDIO_TIMESCALE << 16); // samplerate, 16.16
        bx(out, b"dOps", |out| {
            out.push(0); // Version
            out.push(audio.channels); // OutputChannelCount
            out.put_u16(audio.pre_skip);
            out.put_u32(AUDIO_TIMESCALE); // InputSampleRate
            out.put_u16(0); // OutputGain
            out.push(0); // ChannelMappingFamily
        });
    });
}

fn trex(out: &mut Vec<u8>, track_id: u32) {
    full_box(out, b"trex", 0, 0, |out| {
        out.put_u32(track_id);
        out.put_u32(1); // default_sample_description_index
        out.put_u32(0); // default_sample_duration
        out.put_u32(0); // default_sample_size
        out.put_u32(0); // default_sample_flags
    });
}

/// A `traf` for a non-empty run; returns where its `trun` data_offset field
/// is in `out`, to be patched once the `moof` size is known.
fn traf(out: &mut Vec<u8>, run: &Run) -> usize {
    let mut offset_field = 0;
    bx(out, b"traf", |out| {
        full_box(out, b"tfhd", 0, DEFAULT_BASE_IS_MOOF, |out| {
            out.put_u32(run.track)
        });
        full_box(out, b"tfdt", 1, 0, |out| out.put_u64(run.base_decode_time));
        full_box(out, b"trun", 0, TRUN_FLAGS, |out| {
            // fragment() keeps counts and sizes under 2 GiB.
            out.put_u32(run.samples.len() as u32);
            offset_field = out.len();
            out.put_u32(0); // data_offset, patched
            for sample in &run.samples {
                out.put_u32(sample.duration);
                out.put_u32(sample.data.len() as u32);
                out.put_u32(sample_flags(run.track, sample));
            }
        });
    });
    offset_field
}

fn sample_flags(track: u32, sample: &Sample) -> u32 {
    if sample.keyframe || track != VIDEO_TRACK {
        SYNC_SAMPLE
    } else {
        NON_SYNC_SAMPLE
    }
}

fn run_data_len(run: &Run) -> usize {
    run.samples.iter().map(|s| s.data.len()).sum()
}

// ---------------------------------------------------------------------------
// Reading

/// The whole box at `offset`: its type and size. None if it is truncated
/// or malformed.
fn box_at(data: &[u8], offset: usize) -> Option<([u8; 4], usize)> {
    let header = data.get(offset..offset.checked_add(8)?)?;
    let kind: [u8; 4] = header[4..8].try_into().ok()?;
    let size = match u32::from_be_bytes(header[0..4].try_into().ok()?) {
        0 => return None,
        1 => {
            let large = data.get(offset + 8..offset.checked_add(16)?)?;
            let size = u64::from_be_bytes(large.try_into().ok()?);
            if size < 16 {
                return None;
            }
            usize::try_from(size).ok()?
        }
        size => usize::try_from(size).ok()?,
    };
    if size < 8 || offset.checked_add(size)? > data.len() {
        return None;
    }
    Some((kind, size))
}

/// The NAL units of an Annex B byte stream, without start codes or the
/// zero bytes that trail them.
fn annexb_nal_units(au: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new(); // the first byte after each start code
    let mut i = 0;
    while i + 3 <= au.len() {
        if au[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(au.len(), |&next| next - 3);
        let mut nal = &au[start..end];
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if !nal.is_empty() {
            nals.push(nal);
        }
    }
    nals
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::annexb::tests::BitWriter;

    // --- helpers -----------------------------------------------------------

    fn be16(d: &[u8], at: usize) -> u16 {
        u16::from_be_bytes(d[at..at + 2].try_into().unwrap())
    }

    fn be32(d: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(d[at..at + 4].try_into().unwrap())
    }

    /// Where the child boxes start in a container's body, for the
    /// containers this module writes; None for leaves.
    fn child_offset(kind: &[u8; 4]) -> Option<usize> {
        match kind {
            b"moov" | b"trak" | b"mdia" | b"minf" | b"dinf" | b"stbl" | b"mvex" | b"moof"
            | b"traf" => Some(0),
            b"stsd" | b"dref" => Some(8),
            b"avc1" => Some(78),
            b"Opus" => Some(28),
            _ => None,
        }
    }

    /// Checks that children tile every container exactly; collects the
    /// box types in pre-order.
    fn walk(data: &[u8], kinds: &mut Vec<[u8; 4]>) {
        let boxes = top_level_boxes(data);
        let end = boxes.last().map_or(0, |b| b.1 + b.2);
        assert_eq!(end as usize, data.len(), "boxes tile their parent");
        for (kind, offset, size) in boxes {
            kinds.push(kind);
            if let Some(skip) = child_offset(&kind) {
                walk(
                    &data[offset as usize + 8 + skip..(offset + size) as usize],
                    kinds,
                );
            }
        }
    }

    /// The first box along `path` (each step a child of the one before),
    /// header included.
    fn find<'a>(data: &'a [u8], path: &[&[u8; 4]]) -> &'a [u8] {
        let (first, rest) = path.split_first().unwrap();
        let (_, offset, size) = top_level_boxes(data)
            .into_iter()
            .find(|b| b.0 == **first)
            .unwrap_or_else(|| panic!("no box {first:?}"));
        let whole = &data[offset as usize..(offset + size) as usize];
        if rest.is_empty() {
            whole
        } else {
            find(&whole[8 + child_offset(first).unwrap()..], rest)
        }
    }

    struct TestSps {
        profile: u8,
        constraints: u8,
        width_mbs: u32,
        height_map_units: u32,
        frame_mbs_only: bool,
        crop: [u32; 4],
        poc_type: u32,
        max_ref_frames: u32,
    }

    impl TestSps {
        fn baseline_720p() -> TestSps {
            TestSps {
                profile: 66,
                constraints: 0xC0,
                width_mbs: 80,
                height_map_units: 45,
                frame_mbs_only: true,
                crop: [0; 4],
                poc_type: 2,
                max_ref_frames: 1,
            }
        }

        fn high_1080p() -> TestSps {
            TestSps {
                profile: 100,
                constraints: 0,
                width_mbs: 120,
                height_map_units: 68,
                crop: [0, 0, 0, 4],
                poc_type: 0,
                ..TestSps::baseline_720p()
            }
        }

        fn build(&self) -> Vec<u8> {
            let mut w = BitWriter::default();
            w.u(8, self.profile.into());
            w.u(8, self.constraints.into());
            w.u(8, 31); // level 3.1
            w.ue(0); // seq_parameter_set_id
            if self.profile >= 100 {
                w.ue(1); // chroma_format_idc 4:2:0
                w.ue(0); // bit_depth_luma_minus8
                w.ue(0); // bit_depth_chroma_minus8
                w.u(1, 0); // qpprime
                w.u(1, 1); // seq_scaling_matrix_present_flag
                for i in 0..8 {
                    w.u(1, u32::from(i == 0 || i == 6));
                    if i == 0 {
                        // 8 -> 11 -> 9 -> 0: the list ends after three deltas.
                        for d in [3, -2, -9] {
                            w.se(d);
                        }
                    }
                    if i == 6 {
                        for _ in 0..64 {
                            w.se(0);
                        }
                    }
                }
            }
            w.ue(0); // log2_max_frame_num_minus4
            w.ue(self.poc_type);
            match self.poc_type {
                0 => {
                    w.ue(2);
                }
                1 => {
                    w.u(1, 0);
                    w.se(-1);
                    w.se(2);
                    w.ue(2);
                    w.se(5);
                    w.se(-5);
                }
                _ => {}
            }
            w.ue(self.max_ref_frames);
            w.u(1, 0); // gaps
            w.ue(self.width_mbs - 1);
            w.ue(self.height_map_units - 1);
            w.u(1, u32::from(self.frame_mbs_only));
            if !self.frame_mbs_only {
                w.u(1, 1); // mb_adaptive_frame_field_flag
            }
            w.u(1, 1); // direct_8x8_inference_flag
            let cropping = self.crop != [0; 4];
            w.u(1, u32::from(cropping));
            if cropping {
                for c in self.crop {
                    w.ue(c);
                }
            }
            w.u(1, 0); // vui_parameters_present_flag
            w.nal(0x67)
        }
    }

    const PPS: [u8; 4] = [0x68, 0xCE, 0x3C, 0x80];

    fn video_720p() -> VideoTrack {
        VideoTrack {
            width: 1280,
            height: 720,
            sps: TestSps::baseline_720p().build(),
            pps: PPS.to_vec(),
        }
    }

    fn sample(keyframe: bool, duration: u32, data: &[u8]) -> Sample {
        Sample {
            duration,
            keyframe,
            data: data.to_vec(),
        }
    }

    // --- init segment --------------------------------------------------------

    #[test]
    fn init_segment_is_ftyp_then_moov_with_every_box_in_place() {
        let audio = AudioTrack {
            channels: 2,
            pre_skip: 312,
        };
        let init = init_segment(&video_720p(), Some(&audio));
        let top: Vec<[u8; 4]> = top_level_boxes(&init).iter().map(|b| b.0).collect();
        assert_eq!(top, [*b"ftyp", *b"moov"]);

        let mut kinds = Vec::new();
        walk(&init, &mut kinds);
        let names: Vec<String> = kinds
            .iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        let table = ["stsd", "stts", "stsc", "stsz", "stco"];
        let mut expected = vec!["ftyp", "moov", "mvhd"];
        for (handler_box, entry, config) in [("vmhd", "avc1", "avcC"), ("smhd", "Opus", "dOps")] {
            expected.extend(["trak", "tkhd", "mdia", "mdhd", "hdlr", "minf", handler_box]);
            expected.extend(["dinf", "dref", "url ", "stbl", table[0], entry, config]);
            expected.extend_from_slice(&table[1..]);
        }
        expected.extend(["mvex", "trex", "trex"]);
        assert_eq!(names, expected);
    }

    #[test]
    fn init_segment_fields() {
        let video = video_720p();
        let init = init_segment(&video, None);

        let ftyp = find(&init, &[b"ftyp"]);
        assert_eq!(&ftyp[8..12], b"isom");
        assert_eq!(be32(ftyp, 12), 0x200);

        let mvhd = find(&init, &[b"moov", b"mvhd"]);
        assert_eq!(mvhd.len(), 108);
        assert_eq!(be32(mvhd, 20), 1000);
        assert_eq!(be32(mvhd, mvhd.len() - 4), 2, "next_track_ID");

        let tkhd = find(&init, &[b"moov", b"trak", b"tkhd"]);
        assert_eq!(tkhd.len(), 92);
        assert_eq!(be32(tkhd, 8), 3, "version 0, flags enabled | in movie");
        assert_eq!(be32(tkhd, 20), VIDEO_TRACK);
        assert_eq!(be32(tkhd, 84), 1280 << 16);
        assert_eq!(be32(tkhd, 88), 720 << 16);

        let mdhd = find(&init, &[b"moov", b"trak", b"mdia", b"mdhd"]);
        assert_eq!(mdhd.len(), 32);
        assert_eq!(be32(mdhd, 20), VIDEO_TIMESCALE);
        assert_eq!(be16(mdhd, 28), 0x55C4, "und");

        let hdlr = find(&init, &[b"moov", b"trak", b"mdia", b"hdlr"]);
        assert_eq!(&hdlr[16..20], b"vide");

        let avc1 = find(
            &init,
            &[
                b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd", b"avc1",
            ],
        );
        assert_eq!(be16(avc1, 14), 1, "data_reference_index");
        assert_eq!(be16(avc1, 32), 1280);
        assert_eq!(be16(avc1, 34), 720);
        assert_eq!(be16(avc1, 82), 0x0018, "depth");
        assert_eq!(be16(avc1, 84), 0xFFFF, "pre_defined, just before avcC");

        let avcc = find(&avc1[86..], &[b"avcC"]);
        let mut expected = vec![1, 66, 0xC0, 31, 0xFF, 0xE1];
        expected.extend((video.sps.len() as u16).to_be_bytes());
        expected.extend_from_slice(&video.sps);
        expected.push(1);
        expected.extend((PPS.len() as u16).to_be_bytes());
        expected.extend(PPS);
        assert_eq!(&avcc[8..], &expected[..], "baseline: no chroma trailer");

        let trex = find(&init, &[b"moov", b"mvex", b"trex"]);
        assert_eq!(be32(trex, 12), VIDEO_TRACK);
        assert_eq!(be32(trex, 16), 1, "default_sample_description_index");
    }

    #[test]
    fn high_profile_avcc_has_the_chroma_trailer() {
        let sps = TestSps::high_1080p().build();
        let video = VideoTrack {
            width: 1920,
            height: 1080,
            sps: sps.clone(),
            pps: PPS.to_vec(),
        };
        let init = init_segment(&video, None);
        let path = [
            b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd", b"avc1", b"avcC",
        ];
        let avcc = find(&init, &path);
        assert_eq!(avcc[9], 100);
        assert_eq!(&avcc[avcc.len() - 4..], &[0xFD, 0xF8, 0xF8, 0]);
        assert_eq!(avcc.len(), 8 + 6 + 2 + sps.len() + 1 + 2 + PPS.len() + 4);
    }

    #[test]
    fn opus_sample_entry_and_dops() {
        let audio = AudioTrack {
            channels: 2,
            pre_skip: 312,
        };
        let init = init_segment(&video_720p(), Some(&audio));
        let moov = find(&init, &[b"moov"]);
        let traks: Vec<_> = top_level_boxes(&moov[8..])
            .into_iter()
            .filter(|b| b.0 == *b"trak")
            .collect();
        assert_eq!(traks.len(), 2);
        let (_, offset, size) = traks[1];
        let trak = &moov[8 + offset as usize..8 + (offset + size) as usize];
        let tkhd = find(&trak[8..], &[b"tkhd"]);
        assert_eq!(be32(tkhd, 20), AUDIO_TRACK);
        assert_eq!(be16(tkhd, 44), 0x0100, "volume");
        let mdhd = find(&trak[8..], &[b"mdia", b"mdhd"]);
        assert_eq!(be32(mdhd, 20), AUDIO_TIMESCALE);

        let opus = find(&trak[8..], &[b"mdia", b"minf", b"stbl", b"stsd", b"Opus"]);
        assert_eq!(be16(opus, 14), 1, "data_reference_index");
        assert_eq!(be16(opus, 24), 2, "channelcount");
        assert_eq!(be16(opus, 26), 16, "samplesize");
        assert_eq!(be32(opus, 32), 48_000 << 16);
        let dops = find(&opus[36..], &[b"dOps"]);
        assert_eq!(&dops[8..], &[0, 2, 0x01, 0x38, 0, 0, 0xBB, 0x80, 0, 0, 0]);
        let mvhd = find(&moov[8..], &[b"mvhd"]);
        assert_eq!(be32(mvhd, mvhd.len() - 4), 3, "next_track_ID");
    }

    // --- fragments -------------------------------------------------------------

    fn two_runs() -> Vec<Run> {
        vec![
            Run {
                track: VIDEO_TRACK,
                base_decode_time: 90_000,
                samples: vec![
                    sample(true, 3000, &[0, 0, 0, 3, 0x65, 0xAA, 0xBB]),
                    sample(false, 3000, &[0, 0, 0, 2, 0x41, 0x01]),
                    sample(false, 3003, &[0, 0, 0, 1, 0x41]),
                ],
            },
            Run {
                track: AUDIO_TRACK,
                base_decode_time: 7,
                samples: vec![],
            },
            Run {
                track: AUDIO_TRACK,
                base_decode_time: 48_000,
                samples: vec![
                    sample(false, 960, &[0xFC, 1, 2, 3]),
                    sample(false, 960, &[0xFC, 4, 5]),
                ],
            },
        ]
    }

    #[test]
    fn fragment_offsets_point_at_each_runs_samples() {
        let runs = two_runs();
        let frag = fragment(7, &runs);
        let top = top_level_boxes(&frag);
        assert_eq!(
            top.iter().map(|b| b.0).collect::<Vec<_>>(),
            [*b"moof", *b"mdat"]
        );
        assert_eq!((top[1].1 + top[1].2) as usize, frag.len());
        let mut kinds = Vec::new();
        walk(&frag, &mut kinds);
        let traf = [*b"traf", *b"tfhd", *b"tfdt", *b"trun"];
        let mut expected = vec![*b"moof", *b"mfhd"];
        expected.extend(traf);
        expected.extend(traf);
        expected.push(*b"mdat");
        assert_eq!(kinds, expected);

        let moof = &frag[..top[0].2 as usize];
        assert_eq!(&moof[12..16], b"mfhd");
        assert_eq!(be32(moof, 20), 7, "sequence_number");

        let trafs: Vec<_> = top_level_boxes(&moof[8..])
            .into_iter()
            .filter(|b| b.0 == *b"traf")
            .collect();
        let non_empty: Vec<&Run> = runs.iter().filter(|r| !r.samples.is_empty()).collect();
        assert_eq!(trafs.len(), non_empty.len(), "the empty run is skipped");

        for ((_, offset, size), run) in trafs.into_iter().zip(non_empty) {
            let traf = &moof[8 + offset as usize..8 + (offset + size) as usize];
            let tfhd = find(&traf[8..], &[b"tfhd"]);
            assert_eq!(be32(tfhd, 8), 0x0002_0000);
            assert_eq!(be32(tfhd, 12), run.track);
            assert_eq!(tfhd.len(), 16);
            let tfdt = find(&traf[8..], &[b"tfdt"]);
            assert_eq!(tfdt[8], 1, "version 1");
            assert_eq!(
                u64::from_be_bytes(tfdt[12..20].try_into().unwrap()),
                run.base_decode_time
            );

            let trun = find(&traf[8..], &[b"trun"]);
            assert_eq!(be32(trun, 8), 0x0000_0701);
            assert_eq!(be32(trun, 12) as usize, run.samples.len());
            let mut at = be32(trun, 16) as usize; // from the moof's first byte, which is frag[0]
            for (i, s) in run.samples.iter().enumerate() {
                let entry = 20 + i * 12;
                assert_eq!(be32(trun, entry), s.duration);
                assert_eq!(be32(trun, entry + 4) as usize, s.data.len());
                let flags = be32(trun, entry + 8);
                let expected = if run.track == AUDIO_TRACK || s.keyframe {
                    0x0200_0000
                } else {
                    0x0101_0000
                };
                assert_eq!(flags, expected);
                assert_eq!(&frag[at..at + s.data.len()], &s.data[..]);
                at += s.data.len();
            }
        }
        let mdat_body: Vec<u8> = runs
            .iter()
            .flat_map(|r| &r.samples)
            .flat_map(|s| s.data.clone())
            .collect();
        assert_eq!(&frag[top[1].1 as usize + 8..], &mdat_body[..]);
    }

    #[test]
    fn empty_fragments_are_empty() {
        assert!(fragment(1, &[]).is_empty());
        let empty = Run {
            track: VIDEO_TRACK,
            base_decode_time: 0,
            samples: vec![],
        };
        assert!(fragment(1, &[empty.clone(), empty]).is_empty());
    }

    // --- Annex B -----------------------------------------------------------------

    #[test]
    fn annexb_becomes_length_prefixed_without_parameter_sets() {
        let sps = [0x67, 0x42, 0xC0, 0x1F, 0x8C];
        let mut au = vec![0, 0, 0, 1, 0x09, 0xF0]; // AUD
        au.extend([0, 0, 0, 1]);
        au.extend(sps);
        au.extend([0, 0, 1]);
        au.extend(PPS);
        au.extend([0, 0, 1, 0x06, 0x05, 0x01, 0x80]); // SEI
        au.extend([0, 0, 0, 1, 0x65, 0x88, 0x84, 0x00, 0x00, 0x03, 0x01]);
        au.extend([0, 0, 1, 0x67, 0x64, 0x00]); // a second SPS: not returned
        au.extend([0, 0, 1, 0x41, 0x9A, 0x00, 0x00]); // trailing zeros dropped
        let c = annexb_to_sample(&au);
        assert_eq!(c.sps.as_deref(), Some(&sps[..]));
        assert_eq!(c.pps.as_deref(), Some(&PPS[..]));
        let mut expected: Vec<u8> = vec![0, 0, 0, 4, 0x06, 0x05, 0x01, 0x80];
        expected.extend([0, 0, 0, 7, 0x65, 0x88, 0x84, 0x00, 0x00, 0x03, 0x01]);
        expected.extend([0, 0, 0, 2, 0x41, 0x9A]);
        assert_eq!(c.data, expected);
    }

    #[test]
    fn annexb_edge_cases() {
        let empty = Converted {
            data: vec![],
            sps: None,
            pps: None,
        };
        assert_eq!(annexb_to_sample(&[]), empty);
        assert_eq!(annexb_to_sample(&[0x65, 0x88]), empty, "no start code");
        assert_eq!(annexb_to_sample(&[0, 0, 1]), empty);
        assert_eq!(annexb_to_sample(&[0, 0, 0, 1, 0, 0, 0, 1]), empty);
        let c = annexb_to_sample(&[0, 0, 1, 0x65]);
        assert_eq!(c.data, [0, 0, 0, 1, 0x65]);
    }

    // --- SPS -----------------------------------------------------------------------

    #[test]
    fn sps_size_of_baseline_720p() {
        let sps = TestSps::baseline_720p().build();
        assert_eq!(&sps[..4], &[0x67, 66, 0xC0, 31]);
        assert_eq!(sps_size(&sps), Some((1280, 720)));
        let poc0 = TestSps {
            poc_type: 0,
            ..TestSps::baseline_720p()
        };
        assert_eq!(sps_size(&poc0.build()), Some((1280, 720)));
        let poc1 = TestSps {
            poc_type: 1,
            ..TestSps::baseline_720p()
        };
        assert_eq!(sps_size(&poc1.build()), Some((1280, 720)));
    }

    #[test]
    fn sps_size_of_high_1080p_with_scaling_lists_and_cropping() {
        assert_eq!(sps_size(&TestSps::high_1080p().build()), Some((1920, 1080)));
        let interlaced = TestSps {
            height_map_units: 34,
            frame_mbs_only: false,
            crop: [0, 0, 0, 2],
            poc_type: 1,
            ..TestSps::high_1080p()
        };
        assert_eq!(sps_size(&interlaced.build()), Some((1920, 1080)));
        let cropped_sides = TestSps {
            crop: [4, 4, 0, 4],
            ..TestSps::high_1080p()
        };
        assert_eq!(sps_size(&cropped_sides.build()), Some((1904, 1080)));
    }

    #[test]
    fn sps_size_reads_through_emulation_prevention() {
        let sps = TestSps {
            max_ref_frames: (1 << 24) - 1,
            ..TestSps::baseline_720p()
        }
        .build();
        assert!(
            sps.windows(3).any(|w| w == [0, 0, 3]),
            "the test SPS needs an escape"
        );
        assert_eq!(sps_size(&sps), Some((1280, 720)));
    }

    #[test]
    fn sps_size_never_panics_on_bad_input() {
        let sps = TestSps::high_1080p().build();
        for n in 0..sps.len() {
            let got = sps_size(&sps[..n]);
            assert!(
                got.is_none() || got == Some((1920, 1080)),
                "prefix {n}: {got:?}"
            );
            if n < 4 {
                assert_eq!(got, None);
            }
        }
        let mut not_sps = sps;
        not_sps[0] = 0x68;
        assert_eq!(sps_size(&not_sps), None);
        let mut zeros = vec![0x67];
        zeros.resize(65, 0);
        assert_eq!(sps_size(&zeros), None, "exp-Golomb codes over 32 bits");
        let too_cropped = TestSps {
            crop: [0, 1000, 0, 0],
            ..TestSps::baseline_720p()
        };
        assert_eq!(sps_size(&too_cropped.build()), None);

        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 48) as usize;
            let mut bytes: Vec<u8> = (0..len)
                .map(|i| (state >> (i % 8 * 8)) as u8 ^ (i as u8).wrapping_mul(37))
                .collect();
            if let Some(first) = bytes.first_mut() {
                *first = 0x67;
            }
            let _ = sps_size(&bytes);
            let _ = annexb_to_sample(&bytes);
            let _ = top_level_boxes(&bytes);
            let _ = playable_len(&bytes);
        }
    }

    // --- recovery ------------------------------------------------------------------

    #[test]
    fn top_level_boxes_sizes() {
        let mut large = vec![0, 0, 0, 1];
        large.extend(b"free");
        large.extend(24u64.to_be_bytes());
        large.extend([9; 8]);
        assert_eq!(top_level_boxes(&large), [(*b"free", 0, 24)]);
        assert!(top_level_boxes(&large[..23]).is_empty());

        let mut to_end = vec![0, 0, 0, 0];
        to_end.extend(b"mdat");
        to_end.extend([1, 2, 3]);
        assert!(top_level_boxes(&to_end).is_empty());

        let mut tiny = vec![0, 0, 0, 4];
        tiny.extend(b"free");
        assert!(top_level_boxes(&tiny).is_empty());

        let mut huge = vec![0, 0, 0, 1];
        huge.extend(b"mdat");
        huge.extend(u64::MAX.to_be_bytes());
        assert!(top_level_boxes(&huge).is_empty());

        let mut small_large = vec![0, 0, 0, 1];
        small_large.extend(b"free");
        small_large.extend(8u64.to_be_bytes());
        assert!(top_level_boxes(&small_large).is_empty());
    }

    #[test]
    fn playable_len_at_every_cut() {
        let audio = AudioTrack {
            channels: 1,
            pre_skip: 312,
        };
        let mut file = init_segment(&video_720p(), Some(&audio));
        let mut ends = vec![file.len()];
        for k in 0..3u8 {
            let runs = [
                Run {
                    track: VIDEO_TRACK,
                    base_decode_time: u64::from(k) * 9000,
                    samples: vec![
                        sample(k == 0, 3000, &[0, 0, 0, 2, 0x65, k]),
                        sample(false, 3000, &[0, 0, 0, 1, 0x41]),
                    ],
                },
                Run {
                    track: AUDIO_TRACK,
                    base_decode_time: u64::from(k) * 4800,
                    samples: vec![sample(false, 960, &[0xFC, k, k])],
                },
            ];
            file.extend(fragment(u32::from(k) + 1, &runs));
            ends.push(file.len());
        }
        let kinds: Vec<[u8; 4]> = top_level_boxes(&file).iter().map(|b| b.0).collect();
        assert_eq!(
            kinds,
            [
                *b"ftyp", *b"moov", *b"moof", *b"mdat", *b"moof", *b"mdat", *b"moof", *b"mdat"
            ]
        );

        let mut previous = 0;
        for cut in 0..=file.len() {
            let got = playable_len(&file[..cut]);
            assert!(got as usize <= cut, "cut {cut}");
            assert!(got >= previous, "monotonic at {cut}");
            let expected = ends
                .iter()
                .rev()
                .find(|&&end| end <= cut)
                .copied()
                .unwrap_or(0);
            assert_eq!(got as usize, expected, "cut {cut}");
            previous = got;
        }
        assert_eq!(playable_len(&file), file.len() as u64);
        assert_eq!(playable_len(&file[ends[0]..]), 0, "no init segment");
    }
}
