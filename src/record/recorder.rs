//! The recorder's policy, sans-IO: encoded H.264 access units, motion and
//! the disk's state in, with their times; what to write out (open a
//! segment, append a fragment, close it) and when to ask the encoder for
//! a keyframe. No files, no threads, no clocks: the disk shell
//! (`disk.rs`) does the writing.
//!
//! A segment is one fragmented MP4 file starting at a keyframe; a fragment
//! (moof + mdat, about a second) is the unit written and synced, so a
//! power cut loses at most the last one. In motion mode a clip starts with
//! the pre-roll (`ring.rs`, back to a keyframe) and ends `post` after the
//! motion; continuous mode records all the time. Long clips roll over to
//! a new segment at the first keyframe past `segment`.
//!
//! Keyframes: the encoder sends one only when asked (a WebRTC stream needs
//! none otherwise), so while recording is on the recorder asks for one
//! every `keyframe_every`: that bounds the pre-roll's RAM, lets segments
//! roll over, and lets a clip start within that time after a gap. The
//! alternative, a keyframe forced at motion start, would need the pre-roll
//! to reach back to the previous one anyway, and costs every live viewer a
//! bitrate spike exactly when something happens; README "Recording" has
//! the measured cost of the periodic one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::fmp4::{
    self, AUDIO_TIMESCALE, AUDIO_TRACK, AudioTrack, Run, Sample, VIDEO_TIMESCALE, VIDEO_TRACK,
    VideoTrack,
};
use super::ring::{AudioUnit, Ring, Unit};

/// Samples (48 kHz) the decoder drops at the start: libopus's encoder
/// delay at 48 kHz (2.5 ms lookahead + 4 ms delay compensation).
const OPUS_PRE_SKIP: u16 = 312;
/// One Opus packet of the microphone, in 48 kHz samples (20 ms).
const OPUS_FRAME: u32 = crate::audio::FRAME as u32;
/// A segment carries sound when a microphone is configured, or when one
/// was heard this lately.
const AUDIO_LATELY: Duration = Duration::from_secs(1);
use super::{ClipId, RecordMode, Trigger};

#[derive(Debug, Clone, PartialEq)]
pub struct RecorderConfig {
    pub mode: RecordMode,
    pub pre: Duration,
    pub post: Duration,
    /// A segment rolls over at the first keyframe past this.
    pub segment: Duration,
    /// How much stream one fragment holds.
    pub fragment: Duration,
    pub keyframe_every: Duration,
    /// The pre-roll's bound in RAM.
    pub ring_bytes: usize,
    /// A microphone is configured: every segment has a sound track from
    /// its start, even one opened before the microphone's first packet.
    pub microphone: bool,
}

impl RecorderConfig {
    /// The defaults around the owner's choices.
    pub fn new(mode: RecordMode, pre: Duration, post: Duration, segment: Duration) -> Self {
        RecorderConfig {
            mode,
            pre,
            post,
            segment,
            fragment: Duration::from_secs(1),
            // Often enough for the pre-roll and for segments to roll over
            // on time.
            keyframe_every: pre
                .clamp(Duration::from_secs(2), Duration::from_secs(10))
                .min(segment),
            ring_bytes: 16 << 20,
            microphone: false,
        }
    }
}

/// What the disk shell is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A new file: its init segment (ftyp + moov) first.
    Open {
        id: ClipId,
        trigger: Trigger,
        /// Wall-clock time of its first picture, Unix ms.
        start_ms: u64,
        init: Vec<u8>,
    },
    /// One fragment (moof + mdat) to append and sync.
    Append { id: ClipId, bytes: Vec<u8> },
    /// The segment is whole.
    Close { id: ClipId, duration: Duration },
    /// Ask the encoder for a keyframe.
    Keyframe,
}

/// Whether the disk takes writes (the shell tells).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disk {
    Ready,
    /// Full, read-only, gone or stalled: nothing is opened until Ready.
    Unavailable,
}

#[derive(Debug)]
struct Segment {
    id: ClipId,
    /// Capture time of its first picture (decode time 0).
    origin: Instant,
    /// The parameter sets in its init segment; new ones start a new file.
    params: (Vec<u8>, Vec<u8>),
    /// Decode time of the next sample, 90 kHz.
    dts: u64,
    /// The last unit, waiting for the next to know its duration.
    pending: Option<(Unit, Vec<u8>)>,
    fragment: Vec<Sample>,
    fragment_start: u64,
    seq: u32,
    /// The microphone's track, when the segment has one.
    audio: Option<AudioRun>,
}

/// The sound of a segment: 48 kHz decode times from the same origin.
#[derive(Debug, Default)]
struct AudioRun {
    /// Decode time of the next sample; `None` until the first.
    dts: Option<u64>,
    fragment: Vec<Sample>,
    fragment_start: u64,
}

pub struct Recorder {
    config: RecorderConfig,
    ring: Ring,
    segment: Option<Segment>,
    disk: Disk,
    /// Motion mode: motion now, or the post-roll's end.
    moving: bool,
    post_until: Option<Instant>,
    last_keyframe: Option<Instant>,
    last_ask: Option<Instant>,
    /// When the microphone was last heard.
    last_audio: Option<Instant>,
    /// The last id handed out, so two segments in one second differ.
    last_id: Option<ClipId>,
    out: VecDeque<Output>,
}

impl Recorder {
    pub fn new(config: RecorderConfig) -> Self {
        Recorder {
            ring: Ring::new(config.pre, config.ring_bytes),
            config,
            segment: None,
            disk: Disk::Ready,
            moving: false,
            post_until: None,
            last_keyframe: None,
            last_ask: None,
            last_audio: None,
            last_id: None,
            out: VecDeque::new(),
        }
    }

    /// One encoded H.264 access unit (Annex B), in capture order.
    pub fn video(&mut self, now: Instant, unit: Unit) {
        if self.config.mode == RecordMode::Off {
            return;
        }
        if unit.keyframe {
            self.last_keyframe = Some(unit.captured);
        }
        self.ring.push(unit.clone());
        self.handle_timeout(now);
        // Nothing per unit while no clip is being written: the pre-roll
        // keeps the units as they came.
        let Some(s) = self.segment.as_ref() else {
            self.maybe_open(now);
            return;
        };
        let converted = fmp4::annexb_to_sample(&unit.data);
        let new_params = converted
            .sps
            .as_ref()
            .zip(converted.pps.as_ref())
            .is_some_and(|(sps, pps)| (sps, pps) != (&s.params.0, &s.params.1));
        // A microphone heard after a silent segment opened: the next
        // segment has the sound track.
        let rolls = unit.keyframe
            && (unit.captured.saturating_duration_since(s.origin) >= self.config.segment
                || new_params
                || (s.audio.is_none() && self.heard_lately(now)));
        if rolls {
            self.close(Some(unit.captured));
            // Everything before this keyframe is in the segment just closed:
            // the next starts here, not at an older keyframe the ring kept
            // (a viewer's keyframe request in mid-segment made the two
            // segments overlap).
            self.ring.restart(unit);
            self.maybe_open(now);
            return;
        }
        if let Some(s) = self.segment.as_mut()
            && let Some(bytes) = s.push(unit, converted.data, self.config.fragment)
        {
            let id = s.id.clone();
            self.out.push_back(Output::Append { id, bytes });
        }
    }

    /// One Opus packet of the microphone, in capture order.
    pub fn audio(&mut self, unit: AudioUnit) {
        if self.config.mode == RecordMode::Off {
            return;
        }
        self.last_audio = Some(unit.captured);
        self.ring.push_audio(unit.clone());
        if let Some(s) = self.segment.as_mut() {
            s.push_audio(&unit);
        }
    }

    /// The stream before the recorder lost a unit: what is kept cannot be
    /// continued; the segment ends, and the next starts at a keyframe.
    pub fn gap(&mut self) {
        self.ring.clear();
        self.close(None);
    }

    pub fn motion(&mut self, now: Instant, moving: bool) {
        self.moving = moving;
        self.post_until = (!moving).then(|| now + self.config.post);
        self.handle_timeout(now);
    }

    /// The disk shell's report. A disk that went away ends the segment
    /// (what was synced stays whole).
    pub fn disk(&mut self, disk: Disk) {
        self.disk = disk;
        if disk == Disk::Unavailable {
            self.close(None);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.segment.is_some() && !self.wanted(now) {
            self.close(None);
        }
        // A post-roll that is over is no deadline any more.
        if self.post_until.is_some_and(|t| now >= t) {
            self.post_until = None;
        }
        self.ask_keyframe(now);
    }

    /// When `handle_timeout` has something to do: the post-roll's end, or
    /// the next keyframe to ask for (after the last keyframe and the last
    /// ask). Never a time already handled (the thread would spin).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let every = self.config.keyframe_every;
        let keyframe = (self.config.mode != RecordMode::Off)
            .then(|| {
                let seen = self.last_keyframe.map(|k| k + every);
                let asked = self.last_ask.map(|a| a + every);
                seen.max(asked)
            })
            .flatten();
        [self.post_until, keyframe].into_iter().flatten().min()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn recording(&self) -> Option<&ClipId> {
        self.segment.as_ref().map(|s| &s.id)
    }

    /// The pre-roll now: bytes and seconds kept.
    pub fn pre_roll(&self) -> (usize, Duration) {
        (self.ring.bytes(), self.ring.span())
    }

    fn wanted(&self, now: Instant) -> bool {
        self.disk == Disk::Ready
            && match self.config.mode {
                RecordMode::Off => false,
                RecordMode::Continuous => true,
                RecordMode::Motion => self.moving || self.post_until.is_some_and(|t| now < t),
            }
    }

    fn trigger(&self) -> Trigger {
        match self.config.mode {
            RecordMode::Continuous => Trigger::Continuous,
            _ => Trigger::Motion,
        }
    }

    fn ask_keyframe(&mut self, now: Instant) {
        let every = self.config.keyframe_every;
        let stale = self.last_keyframe.is_none_or(|k| now >= k + every);
        let asked = self.last_ask.is_some_and(|a| now < a + every);
        if self.config.mode != RecordMode::Off && stale && !asked {
            self.last_ask = Some(now);
            self.out.push_back(Output::Keyframe);
        }
    }

    /// Starts a segment from the pre-roll, when one is wanted and the
    /// pre-roll starts at a keyframe carrying its parameter sets.
    fn maybe_open(&mut self, now: Instant) {
        if !self.wanted(now) {
            return;
        }
        let (units, audio) = self.ring.take();
        let Some(first) = units.first() else { return };
        let converted = fmp4::annexb_to_sample(&first.data);
        let (Some(sps), Some(pps)) = (converted.sps, converted.pps) else {
            return; // a keyframe without SPS/PPS: wait for the next
        };
        let (width, height) = fmp4::sps_size(&sps).unwrap_or((0, 0));
        let sound = self.config.microphone || self.heard_lately(now);
        let init = fmp4::init_segment(
            &VideoTrack {
                width,
                height,
                sps: sps.clone(),
                pps: pps.clone(),
            },
            sound
                .then_some(AudioTrack {
                    channels: 1,
                    pre_skip: OPUS_PRE_SKIP,
                })
                .as_ref(),
        );
        let id = self.next_id(first.stamp_ms);
        self.out.push_back(Output::Open {
            id: id.clone(),
            trigger: self.trigger(),
            start_ms: first.stamp_ms,
            init,
        });
        let mut segment = Segment::new(id, first, (sps, pps), sound);
        // The pre-roll's video and sound, in capture order.
        let mut audio = audio.into_iter().peekable();
        for unit in units {
            while let Some(a) = audio.next_if(|a| a.captured <= unit.captured) {
                segment.push_audio(&a);
            }
            let data = fmp4::annexb_to_sample(&unit.data).data;
            if let Some(bytes) = segment.push(unit, data, self.config.fragment) {
                let id = segment.id.clone();
                self.out.push_back(Output::Append { id, bytes });
            }
        }
        for a in audio {
            segment.push_audio(&a);
        }
        self.segment = Some(segment);
    }

    /// Ends the segment: its last unit lasts until `next` (the unit that
    /// follows, when known) or as long as the one before it.
    fn close(&mut self, next: Option<Instant>) {
        let Some(mut s) = self.segment.take() else {
            return;
        };
        if let Some(bytes) = s.finish(next) {
            self.out.push_back(Output::Append {
                id: s.id.clone(),
                bytes,
            });
        }
        let duration = Duration::from_micros(s.dts * 1_000_000 / u64::from(VIDEO_TIMESCALE));
        self.out.push_back(Output::Close { id: s.id, duration });
    }

    fn heard_lately(&self, now: Instant) -> bool {
        self.last_audio
            .is_some_and(|t| now.saturating_duration_since(t) < AUDIO_LATELY)
    }

    fn next_id(&mut self, start_ms: u64) -> ClipId {
        let mut id = ClipId::new(start_ms, self.trigger(), 0);
        let mut n = 0;
        while self.last_id.as_ref().is_some_and(|last| *last >= id) {
            n += 1;
            id = ClipId::new(start_ms, self.trigger(), n);
        }
        self.last_id = Some(id.clone());
        id
    }
}

impl Segment {
    fn new(id: ClipId, first: &Unit, params: (Vec<u8>, Vec<u8>), sound: bool) -> Self {
        Segment {
            id,
            origin: first.captured,
            params,
            dts: 0,
            pending: None,
            fragment: Vec::new(),
            fragment_start: 0,
            seq: 0,
            audio: sound.then(AudioRun::default),
        }
    }

    /// A microphone packet: from the segment's start on, each right after
    /// the last (a lost one lengthens the one before, so the sound stays
    /// in step with the picture).
    fn push_audio(&mut self, unit: &AudioUnit) {
        let Some(a) = self.audio.as_mut() else { return };
        let Some(since) = unit.captured.checked_duration_since(self.origin) else {
            return; // before the first picture
        };
        let at = (since.as_micros() * u128::from(AUDIO_TIMESCALE) / 1_000_000) as u64;
        let dts = *a.dts.get_or_insert(at);
        if a.fragment.is_empty() && dts == at {
            a.fragment_start = at;
        }
        let late = at.saturating_sub(dts);
        if late >= u64::from(OPUS_FRAME) {
            match a.fragment.last_mut() {
                Some(last) => last.duration += late as u32,
                None => a.fragment_start = at,
            }
            a.dts = Some(at);
        }
        a.fragment.push(Sample {
            duration: OPUS_FRAME,
            keyframe: true,
            data: unit.data.to_vec(),
        });
        a.dts = Some(a.dts.unwrap_or(at) + u64::from(OPUS_FRAME));
    }

    /// Takes a unit; returns a fragment when one is full.
    fn push(&mut self, unit: Unit, data: Vec<u8>, fragment: Duration) -> Option<Vec<u8>> {
        let captured = unit.captured;
        if let Some((prev, prev_data)) = self.pending.replace((unit, data)) {
            let ticks = ticks(captured.saturating_duration_since(self.origin));
            let duration = ticks
                .saturating_sub(self.dts)
                .clamp(1, u64::from(VIDEO_TIMESCALE));
            self.sample(&prev, prev_data, duration as u32);
        }
        let full = self.dts - self.fragment_start >= ticks(fragment);
        full.then(|| self.flush()).flatten()
    }

    fn sample(&mut self, unit: &Unit, data: Vec<u8>, duration: u32) {
        self.fragment.push(Sample {
            duration,
            keyframe: unit.keyframe,
            data,
        });
        self.dts += u64::from(duration);
    }

    fn flush(&mut self) -> Option<Vec<u8>> {
        if self.fragment.is_empty() {
            return None;
        }
        self.seq += 1;
        let mut runs = vec![Run {
            track: VIDEO_TRACK,
            base_decode_time: self.fragment_start,
            samples: std::mem::take(&mut self.fragment),
        }];
        self.fragment_start = self.dts;
        if let Some(a) = self.audio.as_mut().filter(|a| !a.fragment.is_empty()) {
            runs.push(Run {
                track: AUDIO_TRACK,
                base_decode_time: a.fragment_start,
                samples: std::mem::take(&mut a.fragment),
            });
            a.fragment_start = a.dts.unwrap_or(a.fragment_start);
        }
        Some(fmp4::fragment(self.seq, &runs))
    }

    /// The pending unit gets its duration, and the last fragment is cut.
    fn finish(&mut self, next: Option<Instant>) -> Option<Vec<u8>> {
        if let Some((unit, data)) = self.pending.take() {
            let last = self.fragment.last().map_or(3_000, |s| s.duration);
            let duration = next.map_or(u64::from(last), |n| {
                ticks(n.saturating_duration_since(self.origin))
                    .saturating_sub(self.dts)
                    .clamp(1, u64::from(VIDEO_TIMESCALE))
            });
            self.sample(&unit, data, duration as u32);
        }
        self.flush()
    }
}

fn ticks(d: Duration) -> u64 {
    (d.as_micros() * u128::from(VIDEO_TIMESCALE) / 1_000_000) as u64
}

#[cfg(test)]
mod tests {
    //! The policy on simulated time, with a stand-in encoder that sends a
    //! keyframe when asked (and at its first frame), 30 frames a second.
    use super::*;

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f, 0x8c, 0x8d, 0x40];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn au(keyframe: bool) -> Arc<[u8]> {
        let mut v = Vec::new();
        if keyframe {
            for nal in [SPS, PPS, &[0x65, 0x88, 0x84, 0x00][..]] {
                v.extend_from_slice(&[0, 0, 0, 1]);
                v.extend_from_slice(nal);
            }
        } else {
            v.extend_from_slice(&[0, 0, 0, 1, 0x41, 0x9a, 0x02, 0x03]);
        }
        v.into()
    }

    use std::sync::Arc;

    struct Sim {
        rec: Recorder,
        t0: Instant,
        frame: u64,
        key_pending: bool,
        /// Every output with the simulated ms it came at.
        outs: Vec<(u64, Output)>,
        keyframes_sent: Vec<u64>,
    }

    impl Sim {
        fn new(config: RecorderConfig) -> Sim {
            Sim {
                rec: Recorder::new(config),
                t0: Instant::now(),
                frame: 0,
                key_pending: true,
                outs: Vec::new(),
                keyframes_sent: Vec::new(),
            }
        }

        fn now_ms(&self) -> u64 {
            self.frame * 1000 / 30
        }

        /// Frames until `ms`.
        fn run_until(&mut self, ms: u64) {
            while self.now_ms() < ms {
                let at = self.now_ms();
                let now = self.t0 + Duration::from_millis(at);
                let keyframe = std::mem::take(&mut self.key_pending);
                if keyframe {
                    self.keyframes_sent.push(at);
                }
                let unit = Unit {
                    data: au(keyframe),
                    keyframe,
                    captured: now,
                    stamp_ms: 1_000_000 + at,
                };
                self.rec.video(now, unit);
                self.drain(at);
                self.frame += 1;
            }
        }

        fn drain(&mut self, at: u64) {
            while let Some(o) = self.rec.poll_output() {
                if o == Output::Keyframe {
                    self.key_pending = true;
                }
                self.outs.push((at, o));
            }
        }

        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }

        fn opens(&self) -> Vec<(u64, u64)> {
            self.outs
                .iter()
                .filter_map(|(at, o)| match o {
                    Output::Open { start_ms, .. } => Some((*at, start_ms - 1_000_000)),
                    _ => None,
                })
                .collect()
        }

        fn closes(&self) -> Vec<(u64, Duration)> {
            self.outs
                .iter()
                .filter_map(|(at, o)| match o {
                    Output::Close { duration, .. } => Some((*at, *duration)),
                    _ => None,
                })
                .collect()
        }
    }

    fn config(mode: RecordMode, pre: u64, post: u64, segment: u64) -> RecorderConfig {
        RecorderConfig::new(
            mode,
            Duration::from_secs(pre),
            Duration::from_secs(post),
            Duration::from_secs(segment),
        )
    }

    #[test]
    fn a_motion_clip_starts_with_the_pre_roll_and_ends_after_the_post_roll() {
        let mut sim = Sim::new(config(RecordMode::Motion, 5, 3, 300));
        sim.run_until(20_000);
        assert!(
            sim.opens().is_empty(),
            "nothing is written while nothing happens"
        );
        let now = sim.at(20_000);
        sim.rec.motion(now, true);
        sim.run_until(25_000);
        let opens = sim.opens();
        assert_eq!(opens.len(), 1);
        let (_, start) = opens[0];
        assert!(
            sim.keyframes_sent.contains(&start),
            "it starts at a keyframe: {start}"
        );
        assert!(
            (10_000..=15_000).contains(&start),
            "5 s of pre-roll, back to a keyframe: {start}"
        );
        let now = sim.at(25_000);
        sim.rec.motion(now, false);
        sim.run_until(32_000);
        let closes = sim.closes();
        assert_eq!(closes.len(), 1, "{closes:?}");
        let (at, duration) = closes[0];
        assert!(
            (28_000..=28_100).contains(&at),
            "3 s after the motion: {at}"
        );
        let expect = Duration::from_millis(at - start);
        assert!(
            duration.abs_diff(expect) < Duration::from_millis(100),
            "{duration:?} against {expect:?}"
        );
        // Fragments of about a second, every one before the Close.
        let appends = sim
            .outs
            .iter()
            .filter(|(_, o)| matches!(o, Output::Append { .. }))
            .count();
        assert!(
            (17..=20).contains(&appends),
            "{appends} fragments for about 18 s"
        );
    }

    /// Once a clip is over and a keyframe asked for, the next deadline is
    /// in the future: the recorder thread waits, never spins (it once took
    /// a third of a core after every motion clip).
    #[test]
    fn the_next_deadline_is_never_one_already_handled() {
        let mut sim = Sim::new(config(RecordMode::Motion, 5, 1, 300));
        sim.run_until(8_000);
        let now = sim.at(8_000);
        sim.rec.motion(now, true);
        sim.run_until(10_000);
        let now = sim.at(10_000);
        sim.rec.motion(now, false);
        sim.run_until(14_000);
        assert_eq!(sim.closes().len(), 1);
        // No keyframe comes any more (an encoder that ignores the asks).
        for ms in (14_000..40_000).step_by(250) {
            let now = sim.at(ms);
            sim.rec.handle_timeout(now);
            sim.drain(ms);
            let next = sim.rec.poll_timeout().expect("the next keyframe ask");
            assert!(
                next > now,
                "at {ms} ms the deadline is {:?} ago",
                now - next
            );
        }
    }

    #[test]
    fn keyframes_are_asked_for_no_more_often_than_needed() {
        let mut sim = Sim::new(config(RecordMode::Motion, 5, 3, 300));
        sim.run_until(60_000);
        let asks: Vec<u64> = sim
            .outs
            .iter()
            .filter(|(_, o)| *o == Output::Keyframe)
            .map(|(at, _)| *at)
            .collect();
        assert!((11..=13).contains(&asks.len()), "one every 5 s: {asks:?}");
        assert!(asks.windows(2).all(|w| w[1] - w[0] >= 4_900), "{asks:?}");
        // Off asks for nothing and keeps nothing.
        let mut off = Sim::new(config(RecordMode::Off, 5, 3, 300));
        off.run_until(20_000);
        assert!(off.outs.is_empty());
    }

    #[test]
    fn continuous_segments_roll_over_at_keyframes() {
        let mut sim = Sim::new(config(RecordMode::Continuous, 5, 3, 4));
        sim.run_until(20_000);
        let opens = sim.opens();
        assert!((4..=6).contains(&opens.len()), "{opens:?}");
        for (_, start) in &opens {
            assert!(sim.keyframes_sent.contains(start), "{start} is a keyframe");
        }
        for w in opens.windows(2) {
            assert!((4_000..=4_100).contains(&(w[1].1 - w[0].1)), "{opens:?}");
        }
        // Each segment is closed before the next opens, and lasts until it.
        let closes = sim.closes();
        assert_eq!(closes.len(), opens.len() - 1);
        for (c, w) in closes.iter().zip(opens.windows(2)) {
            let expect = Duration::from_millis(w[1].1 - w[0].1);
            assert!(
                c.1.abs_diff(expect) < Duration::from_millis(40),
                "{c:?} {w:?}"
            );
        }
    }

    #[test]
    fn a_keyframe_in_mid_segment_does_not_make_segments_overlap() {
        let mut sim = Sim::new(config(RecordMode::Continuous, 5, 3, 3));
        sim.run_until(1_000);
        sim.key_pending = true; // a viewer's PLI
        sim.run_until(10_000);
        let opens = sim.opens();
        let closes = sim.closes();
        assert!(opens.len() >= 3, "{opens:?}");
        for (c, w) in closes.iter().zip(opens.windows(2)) {
            let expect = Duration::from_millis(w[1].1 - w[0].1);
            assert!(
                c.1.abs_diff(expect) < Duration::from_millis(40),
                "the next segment starts where this one ends: {c:?} {w:?}"
            );
        }
        for w in opens.windows(2) {
            assert!(w[1].1 >= w[0].1 + 3_000, "{opens:?}");
        }
    }

    #[test]
    fn a_disk_that_goes_away_ends_the_clip_and_one_that_returns_starts_the_next() {
        let mut sim = Sim::new(config(RecordMode::Continuous, 5, 3, 300));
        sim.run_until(3_000);
        sim.rec.disk(Disk::Unavailable);
        sim.drain(3_000);
        assert_eq!(sim.closes().len(), 1);
        sim.run_until(10_000);
        assert_eq!(
            sim.opens().len(),
            1,
            "nothing opened while the disk is away"
        );
        sim.rec.disk(Disk::Ready);
        sim.run_until(16_000);
        let opens = sim.opens();
        assert_eq!(opens.len(), 2, "{opens:?}");
        assert!(
            opens[1].0 <= 10_100,
            "it starts again from the pre-roll at once: {opens:?}"
        );
    }

    #[test]
    fn a_gap_ends_the_clip_and_the_next_starts_at_a_keyframe() {
        let mut sim = Sim::new(config(RecordMode::Continuous, 2, 3, 300));
        sim.run_until(3_000);
        sim.rec.gap();
        sim.drain(3_000);
        assert_eq!(sim.closes().len(), 1);
        sim.run_until(8_000);
        let opens = sim.opens();
        assert_eq!(opens.len(), 2, "{opens:?}");
        assert!(sim.keyframes_sent.contains(&opens[1].1));
        assert!(opens[1].1 > 3_000, "nothing from before the gap: {opens:?}");
    }

    fn sound_tracks(sim: &Sim) -> Vec<bool> {
        sim.outs
            .iter()
            .filter_map(|(_, o)| match o {
                Output::Open { init, .. } => Some(init.windows(4).any(|w| w == b"soun")),
                _ => None,
            })
            .collect()
    }

    /// Video until `ms`, with a microphone packet every 20 ms.
    fn run_with_sound(sim: &mut Sim, ms: u64) {
        let mut at = sim.now_ms();
        while at < ms {
            at += 20;
            sim.run_until(at);
            let unit = AudioUnit {
                data: Arc::from(&[0xf8u8, 0xff, 0xfe][..]),
                captured: sim.at(at),
            };
            sim.rec.audio(unit);
        }
    }

    #[test]
    fn a_named_microphone_gives_the_first_segment_its_sound_track_before_it_is_heard() {
        let mut sim = Sim::new(RecorderConfig {
            microphone: true,
            ..config(RecordMode::Continuous, 5, 3, 300)
        });
        sim.run_until(500); // the first keyframe opens before any sound
        run_with_sound(&mut sim, 3_000);
        assert_eq!(sound_tracks(&sim), [true]);
    }

    #[test]
    fn a_microphone_heard_after_a_silent_segment_opened_starts_a_segment_with_sound() {
        let mut sim = Sim::new(config(RecordMode::Continuous, 5, 3, 300));
        sim.run_until(3_000);
        assert_eq!(sound_tracks(&sim), [false]);
        run_with_sound(&mut sim, 12_000);
        // At the next keyframe (asked every 5 s), not only after 300 s.
        assert_eq!(sound_tracks(&sim), [false, true]);
        let opens = sim.opens();
        assert!(opens[1].1 <= 8_100, "{opens:?}");
        assert!(sim.keyframes_sent.contains(&opens[1].1));
    }
}
