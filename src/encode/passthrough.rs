//! H.264 passthrough, sans-IO: a camera's own H.264 (V4L2 H264 buffers, or
//! `rpicam-vid --codec h264 --inline -o -`) cut into access units that
//! WebRTC viewers can start on, without decoding anything.
//!
//! What it fixes up, and why:
//! - every IDR goes out with an SPS and PPS in front (the newest ones, kept
//!   when the camera sent them only once), so a viewer joining at any IDR
//!   can decode;
//! - access units before the first decodable IDR are dropped and counted:
//!   a decoder cannot start on them;
//! - access unit delimiters and filler data are dropped: RTP marks the end
//!   of a picture itself (RFC 6184), so an AUD only costs a packet per
//!   frame, and filler is padding for constant-bitrate links. So are the
//!   unspecified types 0 and 24-31: RTP uses 24-31 for its own aggregation
//!   and fragmentation units, so a viewer would misread them. SEI stays:
//!   it is small and a decoder may use it (recovery points, timing);
//! - B slices are refused: WebRTC sends frames in decode order with display
//!   timestamps, and browsers' H.264 path has no reordering.
//!
//! What it leaves alone: the profile and level. The SDP must advertise
//! the camera's own `profile-level-id` ([`StreamInfo::profile_level_id`]).

use std::collections::VecDeque;

use thiserror::Error;

use crate::capture::annexb::{
    self, AnnexBError, AuBoundary, HeaderError, NalSplitter, NalType, SliceHeader, SliceType,
};

/// The largest access unit assembled. Several slices of [`annexb::MAX_NAL_BYTES`]
/// would be a broken stream; a 1080p IDR is rarely 1 MiB.
pub const MAX_AU_BYTES: usize = 8 * 1024 * 1024;

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// What the camera's SPS says, for the SDP and for status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamInfo {
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub width: u32,
    pub height: u32,
    /// profile_idc, constraint byte, level_idc as the SPS has them: 42e01f
    /// (constrained baseline), 4d4028 (main), 640028 (high). Not rewritten.
    pub profile_level_id: u32,
}

impl From<&annexb::Sps> for StreamInfo {
    fn from(sps: &annexb::Sps) -> Self {
        StreamInfo {
            profile_idc: sps.profile_idc,
            constraint_flags: sps.constraint_flags,
            level_idc: sps.level_idc,
            width: sps.width,
            height: sps.height,
            profile_level_id: sps.profile_level_id(),
        }
    }
}

/// One picture, ready for the RTP packetizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// Annex B with 4-byte start codes.
    pub data: Vec<u8>,
    /// Contains an IDR (then SPS and PPS are in front): a viewer may start here.
    pub keyframe: bool,
}

/// Why an access unit was not handed out. After any of them the stream
/// waits for the next IDR (later pictures may refer to the lost one).
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
pub enum PassthroughError {
    #[error(
        "the camera's H.264 has B-frames, which WebRTC cannot carry (pictures must come in \
         display order): set the camera to the constrained baseline (or baseline) profile, \
         which has none (`rpicam-vid --profile baseline`; for a UVC camera its H.264 profile \
         or B-frame control, e.g. `v4l2-ctl -c video_b_frames=0` where the driver has it)"
    )]
    BFrames,
    #[error("an H.264 NAL unit over {limit} bytes")]
    NalTooLarge { limit: usize },
    #[error("an H.264 access unit over {limit} bytes")]
    AccessUnitTooLarge { limit: usize },
    #[error("unreadable H.264 SPS: {0}")]
    BadSps(HeaderError),
    #[error("unreadable H.264 NAL unit: {0}")]
    BadNal(HeaderError),
    #[error("H.264 NAL unit type {nal_type} (extended profile data partitioning) is not supported")]
    Unsupported { nal_type: u8 },
}

/// The access unit being put together.
#[derive(Default)]
struct Building {
    data: Vec<u8>,
    has_vcl: bool,
    has_sps: bool,
    has_pps: bool,
    keyframe: bool,
    /// An IDR with no SPS or PPS, in it or known: nothing can decode it.
    undecodable: bool,
    /// The first thing that went wrong; the rest of the unit is discarded.
    failed: Option<PassthroughError>,
}

/// A handed-out access unit, with the stream it belongs to.
type Ready = Result<(AccessUnit, Option<StreamInfo>), PassthroughError>;

/// Camera H.264 in, access units out. Feed bytes with [`Passthrough::push`]
/// (and [`Passthrough::end_of_unit`] at V4L2 buffer ends), then take every
/// ready unit with [`Passthrough::next_access_unit`]. Memory is one NAL, one
/// access unit being built and the units not yet taken.
///
/// On a bare byte stream an access unit is known to be complete only when
/// the next one begins, so it comes out one frame interval late; a V4L2
/// buffer end says so at once.
pub struct Passthrough {
    splitter: NalSplitter,
    boundary: AuBoundary,
    au: Building,
    /// The newest SPS (NAL unit, and what it says) and PPS.
    sps: Option<(Vec<u8>, StreamInfo)>,
    pps: Option<Vec<u8>>,
    /// The SPS of the last IDR assembled: what later pictures are coded with.
    active: Option<StreamInfo>,
    /// Until a decodable IDR: drop access units.
    waiting: bool,
    dropped: u64,
    limit: usize,
    ready: VecDeque<Ready>,
    /// The stream of the last access unit handed out.
    stream: Option<StreamInfo>,
}

impl Default for Passthrough {
    fn default() -> Self {
        Self::new()
    }
}

impl Passthrough {
    pub fn new() -> Self {
        Self::with_limit(MAX_AU_BYTES)
    }

    fn with_limit(limit: usize) -> Self {
        Passthrough {
            splitter: NalSplitter::new(),
            boundary: AuBoundary::new(),
            au: Building::default(),
            sps: None,
            pps: None,
            active: None,
            waiting: true,
            dropped: 0,
            limit,
            ready: VecDeque::new(),
            stream: None,
        }
    }

    /// Stream bytes, in any chunking.
    pub fn push(&mut self, bytes: &[u8]) {
        self.splitter.push(bytes);
        self.drain_nals();
    }

    /// The bytes so far end an access unit (a V4L2 buffer boundary, or the
    /// end of the stream). Parameter sets alone (some cameras send them in
    /// a buffer of their own) wait for the picture that follows.
    pub fn end_of_unit(&mut self) {
        self.splitter.finish();
        self.drain_nals();
        if self.au.has_vcl {
            self.close();
        }
        self.boundary.reset();
    }

    /// Bytes were lost upstream, or a unit handed out could not be
    /// delivered: drop the unit in progress and the units not yet taken
    /// (later pictures refer to the lost one; both count as dropped) and
    /// wait for the next IDR. The parameter sets are kept, and errors not
    /// yet taken stay.
    pub fn resync(&mut self) {
        self.splitter.resync();
        self.boundary.reset();
        let building = std::mem::take(&mut self.au);
        let units = self.ready.len();
        self.ready.retain(Result::is_err);
        let lost = building.has_vcl as usize + units - self.ready.len();
        self.dropped += lost as u64;
        self.waiting = true;
    }

    /// The next access unit, or why one was dropped. `Err(BFrames)` comes
    /// for every picture with B slices: the caller decides to stop.
    pub fn next_access_unit(&mut self) -> Option<Result<AccessUnit, PassthroughError>> {
        let (au, stream) = match self.ready.pop_front()? {
            Ok(ok) => ok,
            Err(e) => return Some(Err(e)),
        };
        self.stream = stream;
        Some(Ok(au))
    }

    /// The stream the last access unit handed out belongs to (from the SPS
    /// of the IDR it goes back to), so a change of size or profile shows
    /// exactly with the IDR that brings it. `None` before the first one.
    pub fn stream(&self) -> Option<StreamInfo> {
        self.stream
    }

    /// Access units dropped while waiting for a decodable IDR (at the
    /// start, and after an error); the errors themselves are not counted.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn drain_nals(&mut self) {
        while let Some(nal) = self.splitter.next_nal() {
            match nal {
                Ok(nal) => self.on_nal(nal),
                // The NAL is gone, and with it the unit it was part of.
                Err(AnnexBError::NalTooLarge { limit }) => {
                    self.fail(PassthroughError::NalTooLarge { limit })
                }
            }
        }
    }

    fn on_nal(&mut self, nal: Vec<u8>) {
        let kind = match annexb::nal_type(&nal) {
            Ok(kind) => kind,
            Err(e) => return self.fail(PassthroughError::BadNal(e)),
        };
        let slice = self.slice_header(kind, &nal);
        if self.boundary.starts_new(kind, slice.as_ref()) {
            self.close();
        }
        match kind {
            NalType::Aud | NalType::Other(0 | 12 | 24..=31) => {}
            NalType::Sps => self.on_sps(nal),
            NalType::Pps => {
                self.au.has_pps = true;
                self.append(&nal);
                self.pps = Some(nal);
            }
            NalType::Other(n @ 2..=4) => {
                self.au.has_vcl = true;
                self.fail(PassthroughError::Unsupported { nal_type: n });
            }
            k if k.is_vcl() => self.on_slice(k, slice, &nal),
            _ => self.append(&nal),
        }
    }

    /// The slice header of a slice; an unreadable one fails the unit.
    fn slice_header(&mut self, kind: NalType, nal: &[u8]) -> Option<SliceHeader> {
        if !kind.has_slice_header() {
            return None;
        }
        annexb::parse_slice_header(nal)
            .map_err(|e| self.fail(PassthroughError::BadNal(e)))
            .ok()
    }

    fn on_sps(&mut self, nal: Vec<u8>) {
        match annexb::parse_sps(&nal) {
            Ok(sps) => {
                self.au.has_sps = true;
                self.append(&nal);
                self.sps = Some((nal, StreamInfo::from(&sps)));
            }
            Err(e) => self.fail(PassthroughError::BadSps(e)),
        }
    }

    fn on_slice(&mut self, kind: NalType, slice: Option<SliceHeader>, nal: &[u8]) {
        self.au.has_vcl = true;
        if slice.is_some_and(|s| s.slice_type == SliceType::B) {
            return self.fail(PassthroughError::BFrames);
        }
        if kind == NalType::Idr && !self.au.keyframe {
            self.au.keyframe = true;
            self.put_parameter_sets();
        }
        self.append(nal);
    }

    /// Before an IDR's first slice: the SPS and PPS it lacks, from the
    /// newest ones. A missing SPS goes first (a PPS is read with its SPS at
    /// hand); a missing PPS goes after the unit's own SPS, just before the
    /// slice.
    fn put_parameter_sets(&mut self) {
        let (Some((sps, _)), Some(pps)) = (&self.sps, &self.pps) else {
            self.au.undecodable = true;
            return;
        };
        let (sps, pps) = (sps.clone(), pps.clone());
        if !self.au.has_sps {
            self.insert_front(&sps);
        }
        if !self.au.has_pps {
            self.append(&pps);
        }
    }

    fn insert_front(&mut self, nal: &[u8]) {
        if self.fits(nal) {
            let bytes = START_CODE.iter().chain(nal).copied();
            self.au.data.splice(0..0, bytes);
        }
    }

    fn append(&mut self, nal: &[u8]) {
        if self.fits(nal) {
            self.au.data.extend_from_slice(&START_CODE);
            self.au.data.extend_from_slice(nal);
        }
    }

    /// Whether `nal` may join the unit; over the cap the unit fails.
    fn fits(&mut self, nal: &[u8]) -> bool {
        if self.au.failed.is_some() {
            return false;
        }
        let len = self.au.data.len() + START_CODE.len() + nal.len();
        if len > self.limit {
            self.fail(PassthroughError::AccessUnitTooLarge { limit: self.limit });
            return false;
        }
        true
    }

    /// The unit is lost: its first error is reported when it ends.
    fn fail(&mut self, e: PassthroughError) {
        if self.au.failed.is_none() {
            self.au.failed = Some(e);
            self.au.data = Vec::new();
        }
    }

    /// The unit is complete: hand it out, report it, or drop it.
    fn close(&mut self) {
        let au = std::mem::take(&mut self.au);
        if let Some(e) = au.failed {
            self.waiting = true;
            self.ready.push_back(Err(e));
            return;
        }
        if au.undecodable || (self.waiting && !au.keyframe) {
            self.dropped += 1;
            return;
        }
        self.waiting = false;
        if au.keyframe {
            self.active = self.sps.as_ref().map(|(_, info)| *info);
        }
        let unit = AccessUnit {
            data: au.data,
            keyframe: au.keyframe,
        };
        self.ready.push_back(Ok((unit, self.active)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::annexb::tests::BitWriter;
    use crate::capture::scene::Scene;
    use crate::encode::level::nal_units;
    use crate::encode::openh264::OpenH264;
    use crate::encode::{EncoderSettings, VideoEncoder};
    use crate::frame::RawFrame;

    /// `n` frames of the moving scene from openh264, IDRs at `idr`: each
    /// frame one access unit, several slices each.
    fn encode(width: u32, height: u32, n: u64, idr: &[u64]) -> Vec<Vec<u8>> {
        let settings = EncoderSettings {
            width,
            height,
            fps: 30,
            bitrate_kbps: 1500,
            threads: 1,
            slice_bytes: crate::encode::DEFAULT_SLICE_BYTES,
        };
        let mut enc = OpenH264::new(settings).unwrap();
        let scene = Scene::new(width as usize, height as usize);
        let mut raw = RawFrame::black(2, 2);
        (0..n)
            .map(|i| {
                scene.draw(&mut raw, i, i);
                let f = enc.encode(&raw, idr.contains(&i)).unwrap().unwrap();
                assert_eq!(f.keyframe, idr.contains(&i));
                f.data.to_vec()
            })
            .collect()
    }

    fn types(au: &[u8]) -> Vec<u8> {
        nal_units(au).map(|n| n[0] & 0x1f).collect()
    }

    /// An access unit without its SPS and PPS.
    fn strip_parameter_sets(au: &[u8]) -> Vec<u8> {
        nal_units(au)
            .filter(|n| !matches!(n[0] & 0x1f, 7 | 8))
            .flat_map(|n| START_CODE.iter().chain(n).copied())
            .collect()
    }

    fn drain(p: &mut Passthrough) -> Vec<Result<AccessUnit, PassthroughError>> {
        std::iter::from_fn(|| p.next_access_unit()).collect()
    }

    fn unit(data: &[u8]) -> Result<AccessUnit, PassthroughError> {
        Ok(AccessUnit {
            data: data.to_vec(),
            keyframe: types(data).contains(&5),
        })
    }

    /// xorshift64*: deterministic randomness without an RNG dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> usize {
            (self.next() % n) as usize
        }
    }

    /// The whole stream in chunks of `size()` bytes, then its end.
    fn feed(stream: &[u8], mut size: impl FnMut() -> usize) -> Passthrough {
        let mut p = Passthrough::new();
        let mut rest = stream;
        while !rest.is_empty() {
            let (a, b) = rest.split_at(size().clamp(1, rest.len()));
            p.push(a);
            rest = b;
        }
        p.end_of_unit();
        p
    }

    #[test]
    fn an_openh264_stream_comes_back_as_its_access_units_in_any_chunking() {
        let frames = encode(640, 360, 12, &[0, 6]);
        // Every other frame is a small droppable one (two temporal layers).
        let many = frames.iter().filter(|f| types(f).len() > 2).count();
        assert!(many >= frames.len() / 2, "several slices");
        let stream = frames.concat();
        let want: Vec<_> = frames.iter().map(|f| unit(f)).collect();
        let mut rng = Rng(0x5eed);
        for (name, mut p) in [
            ("at once", feed(&stream, || usize::MAX)),
            ("byte by byte", feed(&stream, || 1)),
            ("random chunks", feed(&stream, || 1 + rng.below(3000))),
        ] {
            assert_eq!(drain(&mut p), want, "{name}");
            assert_eq!(p.dropped(), 0);
            let info = p.stream().expect("stream known");
            assert_eq!((info.width, info.height, info.profile_idc), (640, 360, 66));
            assert_eq!(
                info.profile_level_id,
                0x42_0000 | (info.constraint_flags as u32) << 8 | info.level_idc as u32
            );
        }
        // V4L2: one buffer per access unit, each ended at once.
        let mut p = Passthrough::new();
        for f in &frames {
            p.push(f);
            p.end_of_unit();
            assert_eq!(drain(&mut p), vec![unit(f)], "no frame of delay");
        }
    }

    #[test]
    fn an_idr_gets_the_parameter_sets_the_camera_sent_only_once() {
        let frames = encode(320, 240, 8, &[0, 4]);
        let mut p = Passthrough::new();
        p.push(&frames[0]);
        for f in &frames[1..] {
            p.push(&strip_parameter_sets(f));
        }
        p.end_of_unit();
        let got: Vec<_> = drain(&mut p).into_iter().map(Result::unwrap).collect();
        assert_eq!(got.len(), 8);
        assert!(got[4].keyframe);
        assert_eq!(
            types(&got[4].data)[..3],
            [7, 8, 5],
            "SPS, PPS, then the IDR"
        );
        // openh264 repeats the same parameter sets: the unit is as it wrote it.
        assert_eq!(got[4].data, frames[4]);
        // And it decodes from there on, as a viewer joining there would.
        let mut dec = openh264::decoder::Decoder::new().unwrap();
        for au in &got[4..] {
            assert!(dec.decode(&au.data).unwrap().is_some());
        }
    }

    #[test]
    fn a_missing_pps_goes_after_the_units_own_sps() {
        let frames = encode(320, 240, 3, &[0, 2]);
        let only_sps: Vec<u8> = nal_units(&frames[2])
            .filter(|n| n[0] & 0x1f != 8)
            .flat_map(|n| START_CODE.iter().chain(n).copied())
            .collect();
        let mut p = Passthrough::new();
        for f in [&frames[0], &frames[1], &only_sps] {
            p.push(f);
            p.end_of_unit();
        }
        let got = drain(&mut p);
        assert_eq!(got[2], unit(&frames[2]));
    }

    #[test]
    fn units_before_the_first_decodable_idr_are_dropped_and_counted() {
        let frames = encode(320, 240, 10, &[0, 6]);
        // Joined midway: P frames first.
        let mut p = feed(&frames[2..].concat(), || 777);
        let got = drain(&mut p);
        assert_eq!(p.dropped(), 4);
        assert_eq!(got, frames[6..].iter().map(|f| unit(f)).collect::<Vec<_>>());
        // An IDR whose parameter sets never came cannot start a decoder.
        let mut p = Passthrough::new();
        p.push(&strip_parameter_sets(&frames[0]));
        p.push(&frames[1..].concat());
        p.end_of_unit();
        assert_eq!(drain(&mut p)[0], unit(&frames[6]));
        assert_eq!(p.dropped(), 6);
    }

    /// A B slice header: first_mb_in_slice 0, slice_type B (all slices).
    fn b_slice() -> Vec<u8> {
        let mut w = BitWriter::default();
        w.ue(0).ue(6).ue(0).u(16, 0xabcd);
        let mut nal = START_CODE.to_vec();
        nal.extend(w.nal(0x01));
        nal
    }

    #[test]
    fn b_slices_are_refused_every_time() {
        let frames = encode(320, 240, 6, &[0, 4]);
        let mut p = Passthrough::new();
        for chunk in [&frames[0], &b_slice(), &frames[1], &b_slice(), &frames[4]] {
            p.push(chunk);
            p.end_of_unit();
        }
        let got = drain(&mut p);
        assert_eq!(
            got,
            vec![
                unit(&frames[0]),
                Err(PassthroughError::BFrames),
                Err(PassthroughError::BFrames),
                unit(&frames[4]),
            ]
        );
        assert_eq!(p.dropped(), 1, "the P frame after a lost picture");
        let msg = PassthroughError::BFrames.to_string();
        assert!(msg.contains("baseline"), "{msg}");
    }

    #[test]
    fn auds_filler_and_rtp_types_go_and_sei_stays() {
        let frames = encode(320, 240, 2, &[0]);
        let aud = [0, 0, 0, 1, 0x09, 0xf0];
        let sei = [0, 0, 0, 1, 0x06, 0x05, 0x01, 0x55, 0x80];
        // Filler, and a type RTP would read as a STAP-A.
        let dropped = [0, 0, 1, 0x0c, 0xff, 0x80, 0, 0, 1, 0x18, 0x42];
        let mut p = Passthrough::new();
        for f in &frames {
            p.push(&aud);
            p.push(&sei);
            p.push(f);
            p.push(&dropped);
        }
        p.end_of_unit();
        let got: Vec<_> = drain(&mut p).into_iter().map(Result::unwrap).collect();
        assert_eq!(got.len(), 2);
        for (au, f) in got.iter().zip(&frames) {
            assert_eq!(au.data, [&sei[..], f].concat());
        }
    }

    #[test]
    fn resync_waits_for_the_next_idr() {
        let frames = encode(320, 240, 6, &[0, 4]);
        let mut p = Passthrough::new();
        p.push(&frames[..2].concat());
        assert_eq!(drain(&mut p), vec![unit(&frames[0])]);
        p.push(&frames[2][..frames[2].len() / 2]);
        // Frame 1 is ready (frame 2 began), frame 2 half there: both go.
        p.resync();
        assert_eq!(p.dropped(), 2);
        // The stream picks up inside a NAL: its rest is junk.
        p.push(&frames[3][10..]);
        p.push(&frames[3..].concat());
        p.end_of_unit();
        assert_eq!(drain(&mut p), vec![unit(&frames[4]), unit(&frames[5])]);
        // Frame 3's tail (when it has slices after the first) and frame 3.
        let tail = (types(&frames[3]).len() > 1) as u64;
        assert_eq!(p.dropped(), 3 + tail);
    }

    #[test]
    fn a_change_of_size_shows_with_the_idr_that_brings_it() {
        let small = encode(320, 240, 2, &[0]);
        let large = encode(640, 360, 2, &[0]);
        let mut p = Passthrough::new();
        p.push(&[small.concat(), large.concat()].concat());
        p.end_of_unit();
        let mut sizes = Vec::new();
        while let Some(au) = p.next_access_unit() {
            au.unwrap();
            let s = p.stream().unwrap();
            sizes.push((s.width, s.height));
        }
        assert_eq!(sizes, [(320, 240), (320, 240), (640, 360), (640, 360)]);
    }

    #[test]
    fn a_5_mib_nal_is_an_error_and_the_next_idr_resumes() {
        let frames = encode(320, 240, 5, &[0, 3]);
        let mut p = Passthrough::new();
        p.push(&frames[0]);
        p.push(&[0, 0, 0, 1, 0x41]);
        let junk = vec![0xaa; 1 << 20];
        for _ in 0..5 {
            p.push(&junk);
            assert!(p.splitter_holds() <= annexb::MAX_NAL_BYTES);
        }
        for f in &frames[1..] {
            p.push(f);
        }
        p.end_of_unit();
        let got = drain(&mut p);
        let limit = annexb::MAX_NAL_BYTES;
        assert_eq!(
            got,
            vec![
                Err(PassthroughError::NalTooLarge { limit }),
                unit(&frames[3]),
                unit(&frames[4]),
            ],
            "the unit it was found in goes with it"
        );
        assert_eq!(p.dropped(), 2);
    }

    #[test]
    fn an_access_unit_over_the_cap_is_an_error() {
        let frames = encode(320, 240, 4, &[0, 2]);
        let mut p = Passthrough::with_limit(frames[0].len() - 1);
        let limit = frames[0].len() - 1;
        for f in &frames {
            p.push(f);
            assert!(p.au.data.len() <= limit);
            p.end_of_unit();
        }
        let got = drain(&mut p);
        assert_eq!(got[0], Err(PassthroughError::AccessUnitTooLarge { limit }));
    }

    #[test]
    fn truncated_streams_and_random_bytes_give_errors_not_panics() {
        let frames = encode(320, 240, 6, &[0, 3]);
        let stream = frames.concat();
        for cut in (0..stream.len()).step_by(97) {
            let mut p = feed(&stream[..cut], || 500);
            assert!(drain(&mut p).len() <= frames.len());
        }
        // Bytes biased towards start codes, emulation prevention and the
        // NAL types passthrough reads, so the parsers see plenty of them.
        let mut rng = Rng(42);
        let alphabet = [
            0u8, 0, 0, 1, 3, 0x67, 0x68, 0x65, 0x41, 0x01, 0x06, 0x09, 0xff,
        ];
        let mut p = Passthrough::with_limit(64 * 1024);
        let mut outcomes = 0;
        for _ in 0..2_000 {
            let chunk: Vec<u8> = (0..rng.below(1_000))
                .map(|_| match rng.below(4) {
                    0 => rng.next() as u8,
                    _ => alphabet[rng.below(alphabet.len() as u64)],
                })
                .collect();
            p.push(&chunk);
            if rng.below(8) == 0 {
                p.end_of_unit();
            }
            outcomes += drain(&mut p).len();
            assert!(p.au.data.len() <= 64 * 1024);
            assert!(p.splitter_holds() <= annexb::MAX_NAL_BYTES);
        }
        assert!(outcomes > 0, "random bytes produced no outcome at all");
    }

    impl Passthrough {
        fn splitter_holds(&self) -> usize {
            self.splitter.holds()
        }
    }
}
