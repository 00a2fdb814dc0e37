//! A simulated room, for the echo canceller's tests and its bench: a
//! far-end talker played by the speaker, the room between the speaker and
//! the microphone (an impulse response and a bulk delay), and a near-end
//! talker. Deterministic (xorshift), in f32 at [`RATE`] (full scale 1.0).
//!
//! The room is sparse on purpose: a direct path then a reverberation tail of
//! random reflections, one tap in four, so filtering 10 s of sound stays
//! cheap enough for a debug test under qemu.

use std::time::{Duration, Instant};

use super::echo::{EchoCanceller, EchoStats};
use super::{FRAME, RATE, stamp};

const FS: f32 = RATE as f32;
/// Sample 0 of the room's time, Unix ns: a whole second, so stamp slots
/// start on whole frames.
const FIRST_NS: u64 = 1_767_225_600_000_000_000;
/// One stamp slot, in samples (500 ms).
const SLOT: usize = RATE as usize / 2;

/// A room and who talks in it.
#[derive(Debug, Clone)]
pub struct Room {
    pub seconds: usize,
    /// The far-end talker (what the speaker plays): its seed and peak.
    pub far_seed: u32,
    pub far_peak: f32,
    /// The speaker's direct path to the microphone (gain), the
    /// reverberation after it, and a delay nobody reports (the converters,
    /// the air): AEC3 has to find it.
    pub direct: f32,
    pub reverb_ms: f32,
    pub bulk_ms: u32,
    /// The near-end talker: the audio stamp at this gain (its peak is half
    /// of it).
    pub near_gain: f32,
    /// The room's noise, peak.
    pub noise: f32,
    /// How far ahead of playing the speaker writes (ALSA's delay), and how
    /// long after its capture a microphone frame is processed.
    pub speaker_lead: Duration,
    pub capture_age: Duration,
    /// The speaker's and the microphone's threads held up now and then, as
    /// on a busy CPU. A speaker held up longer than its lead runs dry:
    /// silence plays until it writes again.
    pub speaker_stalls: Option<Stalls>,
    pub mic_stalls: Option<Stalls>,
}

/// A thread held up for `length` every `every`.
#[derive(Debug, Clone, Copy)]
pub struct Stalls {
    pub every: Duration,
    pub length: Duration,
}

impl Stalls {
    /// When a thread that wants to run at sample `t` runs.
    fn runs_at(&self, t: usize) -> usize {
        let (every, length) = (samples(self.every), samples(self.length));
        let into = t % every;
        if into < length { t - into + length } else { t }
    }
}

fn samples(d: Duration) -> usize {
    (d.as_nanos() * u128::from(RATE) / 1_000_000_000) as usize
}

impl Default for Room {
    /// A speaker 6 dB from the microphone playing a talker peaking at
    /// -6 dBFS, 40 ms unreported and 60 ms of reverberation; the stamp
    /// peaking at -16.5 dBFS, about the echo's level (double talk in a
    /// third of the time); noise at -71 dBFS.
    ///
    /// Talker 18 is one in whose room AEC3 lets every near-end stamp
    /// through, also with the stamp 2 dB louder or softer and the bulk
    /// delay 20-50 ms. Not every talker's is: in double talk AEC3 still
    /// suppresses parts of the near end while it converges, and loses
    /// about one stamp in sixteen over talkers 1-20 (`audio_bench` prints
    /// them); the echo is 25 dB down in all of them.
    fn default() -> Self {
        Room {
            seconds: 10,
            far_seed: 18,
            far_peak: 0.5,
            direct: 0.5,
            reverb_ms: 60.0,
            bulk_ms: 40,
            near_gain: 0.3,
            noise: 0.0005,
            speaker_lead: Duration::from_millis(19),
            capture_age: Duration::from_millis(21),
            speaker_stalls: None,
            mic_stalls: None,
        }
    }
}

/// What the speaker played and the microphone heard.
#[derive(Debug, Clone)]
pub struct Heard {
    pub far: Vec<i16>,
    /// Each far-end frame's sample of when the speaker wrote it and of
    /// when it played.
    pub frames: Vec<(usize, usize)>,
    /// The echo alone (what cancelling should remove).
    pub echo: Vec<f32>,
    pub mic: Vec<i16>,
}

impl Room {
    /// What the speaker plays and the microphone hears, for `seconds`.
    pub fn hear(&self) -> Heard {
        let n = self.seconds * RATE as usize;
        // A second more of the far end than is heard: the speaker plays
        // ahead of the microphone.
        let far: Vec<i16> = speech(self.seconds as f32 + 1.0, self.far_seed, self.far_peak)
            .into_iter()
            .map(to_i16)
            .collect();
        let frames = self.speaker_schedule(far.len() / FRAME);
        let mut played = vec![0f32; frames.last().map_or(0, |f| f.1 + FRAME)];
        for (k, &(_, at)) in frames.iter().enumerate() {
            for (p, &s) in played[at..at + FRAME].iter_mut().zip(&far[k * FRAME..]) {
                *p = f32::from(s) / 32768.0;
            }
        }
        let h = impulse_response(self.direct, 0.06, 12.0, self.reverb_ms, 0x9e37_79b9);
        let echo = echo_of(&played, &h, self.bulk_ms as usize * RATE as usize / 1000);
        let mut near = vec![0i16; n];
        stamp::render_i16(FIRST_NS, RATE, &mut near);
        let mut rng = Rng::new(0xdead_beef);
        let mic = (0..n)
            .map(|i| {
                let talker = self.near_gain * f32::from(near[i]) / 32768.0;
                to_i16(echo[i] + talker + self.noise * rng.range(-1.0, 1.0))
            })
            .collect();
        Heard {
            far,
            frames,
            echo,
            mic,
        }
    }

    /// When the speaker writes each of `n` frames and when it plays: each
    /// is written `speaker_lead` before the one before it ends, or when the
    /// thread runs again, and plays right after that one unless the
    /// speaker ran dry meanwhile.
    fn speaker_schedule(&self, n: usize) -> Vec<(usize, usize)> {
        let mut end = 0;
        (0..n)
            .map(|_| {
                let wants = end - end.min(samples(self.speaker_lead));
                let written = self.speaker_stalls.map_or(wants, |s| s.runs_at(wants));
                let plays = end.max(written);
                end = plays + FRAME;
                (written, plays)
            })
            .collect()
    }
}

/// How a canceller did in a room.
#[derive(Debug, Clone)]
pub struct Trial {
    /// The echo's energy over what is left of it, where the near end is
    /// silent (200-480 ms into each stamp slot), after 2 s; and in the
    /// worst of those seconds that had echo.
    pub attenuation_db: f64,
    pub worst_second_db: f64,
    /// Each second's from the third on (NaN: no echo in it).
    pub seconds_db: Vec<f64>,
    /// Near-end stamps after 2 s: sent, decoded with the right slot from
    /// the output, and the slots lost.
    pub stamps_sent: usize,
    pub stamps_heard: usize,
    pub missing: Vec<u16>,
    /// Time spent in the canceller, per 20 ms frame.
    pub per_frame: Duration,
    pub stats: EchoStats,
}

/// Runs a canceller through `room` as the threads do: the speaker hands
/// each frame on as it writes it, with when it plays; the microphone's
/// thread takes every frame written by the time it processes a capture
/// frame (`capture_age` after its capture, or when it runs again), then
/// the capture frame. Capture frames start 300 samples off the speaker's.
pub fn trial(room: &Room) -> Trial {
    let heard = room.hear();
    let mut canceller = EchoCanceller::new();
    let t0 = Instant::now();
    let at = |sample: usize| t0 + Duration::from_nanos(sample as u64 * 1_000_000_000 / RATE as u64);
    let mut out = heard.mic.clone();
    let (mut next, mut busy, mut frames) = (0, Duration::ZERO, 0);
    let n = out.len();
    for first in (300..).step_by(FRAME).take_while(|f| f + FRAME <= n) {
        let wants = first + samples(room.capture_age);
        let now = room.mic_stalls.map_or(wants, |s| s.runs_at(wants));
        let t = Instant::now();
        while let Some(&(written, plays)) = heard.frames.get(next)
            && written <= now
        {
            let frame = &heard.far[next * FRAME..(next + 1) * FRAME];
            canceller.render(frame, at(plays)).expect("render");
            next += 1;
        }
        let pcm = &mut out[first..first + FRAME];
        canceller.capture(pcm, at(first)).expect("capture");
        busy += t.elapsed();
        frames += 1;
    }
    score(&heard, &out, busy / frames.max(1), canceller.stats())
}

fn score(heard: &Heard, out: &[i16], per_frame: Duration, stats: EchoStats) -> Trial {
    let from = 2 * RATE as usize;
    let out_f: Vec<f32> = out.iter().map(|&s| f32::from(s) / 32768.0).collect();
    let mut seconds = vec![(0f64, 0f64); out.len().div_ceil(RATE as usize)];
    for slot in (from / SLOT)..(out.len() / SLOT) {
        let quiet = slot * SLOT + SLOT * 2 / 5..slot * SLOT + SLOT * 24 / 25;
        let second = &mut seconds[slot * SLOT / RATE as usize];
        second.0 += energy(&heard.echo[quiet.clone()]);
        second.1 += energy(&out_f[quiet]);
    }
    let total = seconds
        .iter()
        .fold((0.0, 0.0), |a, s| (a.0 + s.0, a.1 + s.1));
    let db = |(echo, left): (f64, f64)| 10.0 * (echo / left.max(1e-12)).log10();
    let seconds_db: Vec<f64> = seconds[2..]
        .iter()
        .map(|&s| {
            if s.0 > total.0 / 100.0 {
                db(s)
            } else {
                f64::NAN
            }
        })
        .collect();
    let worst = seconds_db
        .iter()
        .copied()
        .filter(|d| !d.is_nan())
        .fold(f64::INFINITY, f64::min);
    let (sent, missing) = stamps(&out[from..], from);
    Trial {
        attenuation_db: db(total),
        worst_second_db: worst,
        seconds_db,
        stamps_sent: sent.len(),
        stamps_heard: sent.len() - missing.len(),
        missing,
        per_frame,
        stats,
    }
}

/// The near-end stamps whose slot starts in `out` (which begins at sample
/// `offset` of the room) early enough to end inside it, and those of them
/// not decoded within 20 ms of their time with their own slot number.
fn stamps(out: &[i16], offset: usize) -> (Vec<u16>, Vec<u16>) {
    let found = stamp::detect_i16(out, RATE);
    let slot_ns = 1_000_000_000 * SLOT as u64 / RATE as u64;
    let stamp_len = RATE as usize * 180 / 1000;
    let sent: Vec<(usize, u16)> = (offset.div_ceil(SLOT)..)
        .map(|k| (k * SLOT - offset, k))
        .take_while(|(pos, _)| pos + stamp_len <= out.len())
        .map(|(pos, k)| (pos, stamp::slot_of(FIRST_NS + k as u64 * slot_ns)))
        .collect();
    let heard = |&(pos, slot): &(usize, u16)| {
        found
            .iter()
            .any(|d| d.slot == slot && (d.pos - pos as f64).abs() < 960.0)
    };
    let missing = sent.iter().filter(|s| !heard(s)).map(|s| s.1).collect();
    (sent.into_iter().map(|s| s.1).collect(), missing)
}

/// A xorshift32 generator: the same sequence on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u32);

impl Rng {
    /// A generator from `seed` (0 would stay 0: it is replaced).
    pub fn new(seed: u32) -> Self {
        Rng(if seed == 0 { 0x2545_f491 } else { seed })
    }

    pub fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        let unit = (self.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
        lo + (hi - lo) * unit
    }
}

/// A two-pole resonator: one formant of the voice.
struct Formant {
    a1: f32,
    a2: f32,
    gain: f32,
    y1: f32,
    y2: f32,
}

impl Formant {
    fn new(hz: f32, bandwidth: f32) -> Self {
        let r = (-std::f32::consts::PI * bandwidth / FS).exp();
        let theta = std::f32::consts::TAU * hz / FS;
        Formant {
            a1: 2.0 * r * theta.cos(),
            a2: -r * r,
            gain: 1.0 - r,
            y1: 0.0,
            y2: 0.0,
        }
    }

    fn step(&mut self, x: f32) -> f32 {
        let y = self.gain * x + self.a1 * self.y1 + self.a2 * self.y2;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// A talker: syllables of 120-280 ms (a glottal pulse train with jitter
/// and breath through three formants, pitch gliding between 80 and
/// 240 Hz, random loudness over 10 dB) 40-150 ms apart, a 0.4-0.8 s pause
/// every eight. Its peak is `peak` (full scale 1.0).
pub fn speech(seconds: f32, seed: u32, peak: f32) -> Vec<f32> {
    let n = (seconds * FS) as usize;
    let mut out = vec![0f32; n];
    let mut rng = Rng::new(seed);
    let (mut at, mut said) = (0, 0u32);
    while at < n {
        let len = (rng.range(0.12, 0.28) * FS) as usize;
        syllable(&mut rng, &mut out[at..n.min(at + len)], len);
        at += len + (rng.range(0.04, 0.15) * FS) as usize;
        said += 1;
        if said.is_multiple_of(8) {
            at += (rng.range(0.4, 0.8) * FS) as usize;
        }
    }
    let max = out.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max > 0.0 {
        out.iter_mut().for_each(|v| *v *= peak / max);
    }
    out
}

/// One syllable `len` samples long (`out` may be cut short by the end).
fn syllable(rng: &mut Rng, out: &mut [f32], len: usize) {
    let loudness = rng.range(0.3, 1.0);
    let f0_start = rng.range(100.0, 200.0);
    let f0_end = f0_start * rng.range(0.8, 1.2);
    let mut formants = [
        Formant::new(rng.range(300.0, 800.0), 80.0),
        Formant::new(rng.range(900.0, 2300.0), 120.0),
        Formant::new(rng.range(2400.0, 3400.0), 200.0),
    ];
    let mut phase = 0f32;
    for (j, sample) in out.iter_mut().enumerate() {
        let u = j as f32 / len as f32;
        phase += (f0_start + (f0_end - f0_start) * u) / FS;
        let pulse = if phase >= 1.0 {
            // Jitter: the next period 5 % longer or shorter.
            phase -= 1.0 + 0.1 * rng.range(-0.5, 0.5);
            1.0
        } else {
            0.0
        };
        let excitation = pulse + 0.3 * rng.range(-0.5, 0.5);
        let voice = formants[0].step(excitation)
            + 0.6 * formants[1].step(excitation)
            + 0.3 * formants[2].step(excitation);
        let envelope = (u * 8.0).min(1.0) * ((1.0 - u) * 5.0).min(1.0);
        *sample = voice * envelope * loudness;
    }
}

/// A speaker near a microphone: the direct path at `direct` gain, then from
/// 0.5 ms on a tail of reflections decaying with time constant `decay_ms`
/// (from `tail` at its start) over `len_ms`.
pub fn impulse_response(direct: f32, tail: f32, decay_ms: f32, len_ms: f32, seed: u32) -> Vec<f32> {
    let len = (len_ms * FS / 1000.0) as usize;
    let tau = decay_ms * FS / 1000.0;
    let mut rng = Rng::new(seed);
    let mut h = vec![0f32; len.max(1)];
    h[0] = direct;
    for (j, tap) in h.iter_mut().enumerate().skip(24) {
        if rng.next_u32().is_multiple_of(4) {
            *tap = tail * (-(j as f32) / tau).exp() * rng.range(-1.0, 1.0);
        }
    }
    h
}

/// `x` through `h`, the first `bulk` samples late (zero taps skipped).
pub fn echo_of(x: &[f32], h: &[f32], bulk: usize) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    for (d, &g) in h.iter().enumerate().filter(|(_, g)| **g != 0.0) {
        let Some(out) = y.get_mut(bulk + d..) else {
            continue;
        };
        for (o, &s) in out.iter_mut().zip(x) {
            *o += g * s;
        }
    }
    y
}

/// Energy of `x`, summed.
pub fn energy(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v).powi(2)).sum()
}

/// f32 (full scale 1.0) to S16, clipped.
pub fn to_i16(x: f32) -> i16 {
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_talker_talks_in_syllables_and_pauses_at_its_peak() {
        let s = speech(4.0, 7, 0.5);
        let peak = s.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!((peak - 0.5).abs() < 1e-6);
        let frames: Vec<f64> = s.chunks(960).map(energy).collect();
        let loud = frames.iter().filter(|&&e| e > 1e-3).count();
        let silent = frames.iter().filter(|&&e| e == 0.0).count();
        assert!(loud > frames.len() / 3, "{loud} of {}", frames.len());
        assert!(silent > frames.len() / 10, "{silent} of {}", frames.len());
        assert_eq!(s, speech(4.0, 7, 0.5), "deterministic");
    }

    #[test]
    fn the_echo_is_the_direct_path_late_by_the_bulk_then_the_tail() {
        let h = impulse_response(0.5, 0.06, 12.0, 60.0, 3);
        assert_eq!(h.len(), 2880);
        assert_eq!(h[0], 0.5);
        assert!(h[1..24].iter().all(|&t| t == 0.0));
        let mut click = vec![0f32; 4800];
        click[0] = 1.0;
        let y = echo_of(&click, &h, 1920);
        assert!(y[..1920].iter().all(|&v| v == 0.0));
        assert_eq!(y[1920], 0.5);
        assert_eq!(&y[1920..1920 + 2880], &h[..]);
    }
}
