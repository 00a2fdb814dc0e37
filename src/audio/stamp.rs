//! The audio stamp (shared/audio/AUDIO_STAMP.md, version 1): the audio
//! counterpart of the video timestamp stripe.
//!
//! At every multiple of 500 ms of the sender's wall clock the signal carries
//! a 30 ms chirp (600 → 3600 Hz) that marks the instant, then six 20 ms tones
//! (MFSK-16) with the 16-bit slot number and a CRC-8, then digital silence.
//! A receiver on the same host finds the chirp, reads the slot, and gets
//! `latency = receiver time of the chirp start − slot start`.
//!
//! Generation works on integer Unix nanoseconds throughout: an f64 of seconds
//! since the epoch is only good to 0.24 µs, which would smear the chirp's
//! phase. Detection follows section 5 of the spec step by step (the Python
//! reference `audio_stamp.detect` is the oracle); its matched filter runs as
//! an overlap-save FFT correlation because the direct form costs 1440
//! multiply-adds per sample at 48 kHz, far too slow on an emulated ARM.

use std::f64::consts::{FRAC_PI_2, PI, TAU};
use std::ops::{Add, Mul, Sub};

/// Sample rate of rtcam's audio.
pub const RATE: u32 = 48_000;

const NS_PER_S: u64 = 1_000_000_000;
/// One stamp per period; slot numbers count periods since the epoch.
const PERIOD_NS: u64 = 500_000_000;
/// Slot numbers wrap at 2^16 (every 9.1 h).
const SLOTS: u64 = 1 << 16;

/// Peak amplitude (−6 dBFS): headroom for codec overshoot.
const AMPLITUDE: f64 = 0.5;
/// Every burst fades in and out over this long, so codecs see no clicks.
const RAMP_S: f64 = 0.0025;

const CHIRP_NS: u64 = 30_000_000;
const CHIRP_S: f64 = CHIRP_NS as f64 / 1e9;
const CHIRP_F0: f64 = 600.0;
/// Sweep rate in Hz/s: 600 → 3600 Hz over the 30 ms chirp.
const CHIRP_SWEEP: f64 = 100_000.0;

const DATA_START_NS: u64 = 40_000_000;
const DATA_START_S: f64 = DATA_START_NS as f64 / 1e9;
const SYMBOL_NS: u64 = 20_000_000;
const SYMBOL_S: f64 = SYMBOL_NS as f64 / 1e9;
const N_SYMBOLS: usize = 6;
const STAMP_NS: u64 = DATA_START_NS + N_SYMBOLS as u64 * SYMBOL_NS;
const STAMP_S: f64 = STAMP_NS as f64 / 1e9;
/// Tone of symbol s: 600 + 200·s Hz, all inside Opus' narrowband range.
const TONE_F0: f64 = 600.0;
const TONE_DF: f64 = 200.0;
const N_TONES: usize = 16;

/// The detector reads the central 15 ms of each 20 ms symbol: the ramps and
/// any timing error stay outside, and 15 ms makes the 200 Hz tone spacing
/// exactly three DFT bins, so the tones are orthogonal there.
const WINDOW_OFFSET_S: f64 = 0.0025;
const WINDOW_S: f64 = 0.015;

/// Normalised chirp correlation a candidate needs (a clean stamp gives ≈ 1,
/// noise ≈ √(2/L), far below).
const RHO_MIN: f64 = 0.5;
/// The best tone of every symbol must beat the second best by this much.
const MARGIN_MIN_DB: f64 = 3.0;
/// Candidates closer than this belong to the same stamp (half a period).
const SUPPRESS_S: f64 = 0.25;
/// Below this rate the highest tone (3600 Hz) would alias.
const MIN_RATE: u32 = 8_000;

/// CRC-8/SMBUS (poly 0x07, init 0).
///
/// The same CRC as the video stripe's (no reflection, no final XOR), so one
/// check value covers both.
pub fn crc8(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |crc, &b| {
        (0..8).fold(crc ^ b, |c, _| {
            if c & 0x80 != 0 {
                (c << 1) ^ 0x07
            } else {
                c << 1
            }
        })
    })
}

/// The six 4-bit symbols for slot k.
///
/// The payload is the 24-bit word `slot << 8 | crc8(slot as big-endian)`,
/// most significant nibble first; a single wrong symbol is a burst of at most
/// four bits, which CRC-8 always catches.
pub fn symbols(slot: u16) -> [u8; 6] {
    let word = (u32::from(slot) << 8) | u32::from(crc8(&slot.to_be_bytes()));
    std::array::from_fn(|j| ((word >> (20 - 4 * j)) & 0xF) as u8)
}

/// The slot whose symbols these are, or `None` when the CRC disagrees.
fn slot_of_symbols(syms: [u8; 6]) -> Option<u16> {
    let word = syms
        .iter()
        .fold(0u32, |w, &s| (w << 4) | u32::from(s & 0xF));
    let slot = (word >> 8) as u16;
    (crc8(&slot.to_be_bytes()) == (word & 0xFF) as u8).then_some(slot)
}

/// Slot number for a Unix time in ns: floor(ms/500) mod 65536.
pub fn slot_of(unix_ns: u64) -> u16 {
    ((unix_ns / PERIOD_NS) % SLOTS) as u16
}

/// Slot start (Unix ns) of slot k: the latest multiple of 500 ms <= near_ns whose slot number is k.
///
/// `near_ns` is when the receiver saw the stamp, so this is right while the
/// latency stays below the 9.1 h wrap. Within 9.1 h of the epoch there may be
/// no such slot yet; the first slot numbered k is returned then.
pub fn slot_start_ns(slot: u16, near_ns: u64) -> u64 {
    let k_near = near_ns / PERIOD_NS;
    let back = u64::from(slot_of(near_ns).wrapping_sub(slot));
    k_near.checked_sub(back).unwrap_or(u64::from(slot)) * PERIOD_NS
}

/// Raised-cosine gain of a burst `len` s long, `u` s into it (0 outside).
fn ramp(u: f64, len: f64) -> f64 {
    if !(0.0..len).contains(&u) {
        0.0
    } else if u < RAMP_S {
        0.5 - 0.5 * (PI * u / RAMP_S).cos()
    } else if u > len - RAMP_S {
        0.5 - 0.5 * (PI * (len - u) / RAMP_S).cos()
    } else {
        1.0
    }
}

/// Phase (rad) of the chirp `u` s after its start; it starts at phase 0.
fn chirp_phase(u: f64) -> f64 {
    TAU * (CHIRP_F0 * u + 0.5 * CHIRP_SWEEP * u * u)
}

fn tone_hz(symbol: usize) -> f64 {
    TONE_F0 + TONE_DF * symbol as f64
}

/// The stamp of `slot`, `tau_ns` after the slot start.
///
/// Which burst a time falls in is decided on integer ns, so sample times on
/// a boundary land in the same part on every platform.
fn stamp_at(tau_ns: u64, slot: u16) -> f64 {
    if tau_ns < CHIRP_NS {
        let tau = tau_ns as f64 / 1e9;
        return AMPLITUDE * ramp(tau, CHIRP_S) * chirp_phase(tau).sin();
    }
    if !(DATA_START_NS..STAMP_NS).contains(&tau_ns) {
        return 0.0;
    }
    let into_data = tau_ns - DATA_START_NS;
    let j = (into_data / SYMBOL_NS) as usize;
    let u = (into_data % SYMBOL_NS) as f64 / 1e9;
    let hz = tone_hz(usize::from(symbols(slot)[j]));
    AMPLITUDE * ramp(u, SYMBOL_S) * (TAU * hz * u).sin()
}

fn wave(unix_ns: u64) -> f64 {
    stamp_at(unix_ns % PERIOD_NS, slot_of(unix_ns))
}

/// The waveform value (-0.5..0.5) at Unix time `unix_ns` (integer ns, exact phase).
pub fn value_at(unix_ns: u64) -> f32 {
    wave(unix_ns) as f32
}

/// Time of sample `i` at `rate`, in ns after sample 0, rounded to the nearest
/// ns. Whole seconds and the remainder are split so that nothing overflows
/// and nothing accumulates: sample 48 000 is exactly one second later.
fn sample_offset_ns(i: u64, rate: u32) -> u64 {
    let rate = u64::from(rate);
    (i / rate) * NS_PER_S + ((i % rate) * NS_PER_S + rate / 2) / rate
}

/// S16 the way the spec has it: round(x·32767), clipped.
fn to_s16(x: f64) -> i16 {
    (x * 32767.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Renders samples: sample i has Unix time first_ns + i*1e9/rate (computed in integer ns, no drift), as S16 (round(x*32767), clipped) mono.
///
/// Panics if `rate` is 0.
pub fn render_i16(first_ns: u64, rate: u32, out: &mut [i16]) {
    StampSource::new(first_ns, rate).next_frame(out);
}

/// A generator that keeps its sample counter (stateful, for a paced test
/// microphone).
///
/// Sample times come from the counter, never from the clock at the moment a
/// frame is rendered: a frame that is late keeps its times, so its lateness
/// shows up as latency, which is the truth (spec section 4).
#[derive(Debug, Clone)]
pub struct StampSource {
    first_ns: u64,
    rate: u32,
    next: u64,
}

impl StampSource {
    /// A source whose sample 0 is captured at `first_ns` (Unix ns).
    ///
    /// Panics if `rate` is 0.
    pub fn new(first_ns: u64, rate: u32) -> Self {
        assert!(rate > 0, "audio stamp: sample rate must be positive");
        StampSource {
            first_ns,
            rate,
            next: 0,
        }
    }

    /// Fills the next `out.len()` samples.
    pub fn next_frame(&mut self, out: &mut [i16]) {
        for (i, sample) in (self.next..).zip(out.iter_mut()) {
            *sample = to_s16(wave(self.time_of(i)));
        }
        self.next += out.len() as u64;
    }

    /// Unix ns of sample index `sample`: a pacer hands a frame over when
    /// the time of its last sample has come.
    pub fn time_of(&self, sample: u64) -> u64 {
        self.first_ns + sample_offset_ns(sample, self.rate)
    }

    /// Index of the sample the next frame starts with.
    pub fn position(&self) -> u64 {
        self.next
    }
}

/// One stamp found in a buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Sub-sample index of the chirp start in the buffer.
    pub pos: f64,
    pub slot: u16,
    /// Normalised chirp correlation: ≈ 1 for a clean stamp at any gain.
    pub rho: f32,
    /// Worst symbol's best tone over its second best, dB.
    pub margin_db: f32,
}

/// Detects stamps in mono samples at `rate` (any rate ≥ 8 kHz), in order.
///
/// A stamp is reported only when its CRC matches and every symbol is clear
/// (≥ 3 dB margin): a damaged stamp is left out, never guessed. So are
/// stamps whose data run past the end of `x`, and those whose chirp peak
/// falls on the very first sample (cut by the buffer start, so the position
/// cannot be trusted): a caller scanning a stream should overlap its buffers
/// by at least the stamp length (160 ms).
pub fn detect(x: &[f32], rate: u32) -> Vec<Detection> {
    let fs = f64::from(rate);
    let need = (STAMP_S * fs).ceil() as usize + 2;
    if rate < MIN_RATE || x.len() < need {
        return Vec::new();
    }
    let matched = MatchedFilter::run(x, &chirp_template(fs));
    let peaks = strongest_per_group(
        &matched.candidates(),
        &matched.r,
        (SUPPRESS_S * fs) as usize,
    );
    peaks
        .into_iter()
        .filter_map(|p| decode_at(x, &matched, p, fs, need))
        .collect()
}

/// [`detect`] for S16 samples.
pub fn detect_i16(x: &[i16], rate: u32) -> Vec<Detection> {
    let x: Vec<f32> = x.iter().map(|&v| f32::from(v) / 32768.0).collect();
    detect(&x, rate)
}

/// Reads the stamp whose chirp peaks at correlation index `p`.
fn decode_at(
    x: &[f32],
    matched: &MatchedFilter,
    p: usize,
    fs: f64,
    need: usize,
) -> Option<Detection> {
    let pos = matched.peak_position(p)?;
    if pos.round() as usize + need > x.len() {
        return None;
    }
    let (syms, margin_db) = read_symbols(x, pos, fs)?;
    let slot = slot_of_symbols(syms)?;
    (margin_db >= MARGIN_MIN_DB).then(|| Detection {
        pos,
        slot,
        rho: matched.rho(p) as f32,
        margin_db: margin_db as f32,
    })
}

/// The six symbols after a chirp starting at `pos`, and the worst margin (dB).
fn read_symbols(x: &[f32], pos: f64, fs: f64) -> Option<([u8; 6], f64)> {
    let width = (WINDOW_S * fs).round() as usize;
    let tones = ToneBank::new(fs);
    let mut syms = [0u8; N_SYMBOLS];
    let mut worst = f64::INFINITY;
    for (j, sym) in syms.iter_mut().enumerate() {
        let offset_s = DATA_START_S + j as f64 * SYMBOL_S + WINDOW_OFFSET_S;
        let start = (pos + offset_s * fs).round() as usize;
        let (best, margin_db) = tones.strongest(x.get(start..start + width)?);
        *sym = best;
        worst = worst.min(margin_db);
    }
    Some((syms, worst))
}

/// Goertzel filters at the 16 tone frequencies: a DFT evaluated at 16
/// frequencies only, at any rate (the tones need not fall on FFT bins).
struct ToneBank {
    coeffs: [f64; N_TONES],
}

impl ToneBank {
    fn new(fs: f64) -> Self {
        ToneBank {
            coeffs: std::array::from_fn(|s| 2.0 * (TAU * tone_hz(s) / fs).cos()),
        }
    }

    /// The strongest tone in `seg` and how far (dB) it beats the runner-up.
    fn strongest(&self, seg: &[f32]) -> (u8, f64) {
        let energies = self.coeffs.map(|c| goertzel_energy(seg, c));
        let (mut best, mut second) = (0, 1);
        if energies[second] > energies[best] {
            (best, second) = (second, best);
        }
        for s in 2..N_TONES {
            if energies[s] > energies[best] {
                (best, second) = (s, best);
            } else if energies[s] > energies[second] {
                second = s;
            }
        }
        let margin = 10.0 * ((energies[best] + 1e-30) / (energies[second] + 1e-30)).log10();
        (best as u8, margin)
    }
}

/// |Σ x[n]·e^(−iωn)|² with `coeff` = 2·cos ω, in one real recursion.
fn goertzel_energy(seg: &[f32], coeff: f64) -> f64 {
    let (s1, s2) = seg.iter().fold((0.0, 0.0), |(s1, s2), &v| {
        (f64::from(v) + coeff * s1 - s2, s1)
    });
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// The analytic chirp R·exp(i(φ − π/2)) sampled at `fs`: its real part is
/// the sent chirp, its imaginary part the quadrature one, so the magnitude
/// of the correlation is an envelope whose peak does not depend on the
/// carrier phase a codec may shift.
fn chirp_template(fs: f64) -> Vec<Complex> {
    let len = (CHIRP_S * fs).round() as usize;
    (0..len)
        .map(|m| {
            let u = m as f64 / fs;
            Complex::from_polar(ramp(u, CHIRP_S), chirp_phase(u) - FRAC_PI_2)
        })
        .collect()
}

/// Indices of the strongest correlation among candidates less than `span`
/// apart, grouped from each group's first candidate as the reference does.
fn strongest_per_group(candidates: &[usize], r: &[f64], span: usize) -> Vec<usize> {
    let mut peaks = Vec::new();
    let mut rest = candidates;
    while let Some(&first) = rest.first() {
        let end = rest
            .iter()
            .position(|&n| n - first >= span)
            .unwrap_or(rest.len());
        let (group, tail) = rest.split_at(end);
        let best = group
            .iter()
            .copied()
            .reduce(|a, b| if r[b] > r[a] { b } else { a });
        peaks.push(best.unwrap_or(first));
        rest = tail;
    }
    peaks
}

/// The chirp correlation over a whole buffer, with what is needed to
/// normalise it.
struct MatchedFilter {
    /// r[n] = |Σ_m x[n+m]·conj(c[m])| for every n where the template fits.
    r: Vec<f64>,
    /// energy[n] = Σ x[..n]², so that any window's energy costs O(1).
    energy: Vec<f64>,
    template_len: usize,
    template_norm: f64,
}

impl MatchedFilter {
    /// Needs `x.len() >= template.len()`.
    fn run(x: &[f32], template: &[Complex]) -> Self {
        let energy = std::iter::once(0.0)
            .chain(x.iter().scan(0.0, |sum, &v| {
                *sum += f64::from(v) * f64::from(v);
                Some(*sum)
            }))
            .collect();
        MatchedFilter {
            r: correlate(x, template),
            energy,
            template_len: template.len(),
            template_norm: template.iter().map(|c| c.norm_sqr()).sum::<f64>().sqrt(),
        }
    }

    /// ρ[n] = √2·r[n] / (‖c‖·‖x[n..n+L)‖): the √2 because a real signal
    /// puts only half its energy into the analytic template's band. Digital
    /// silence gives 0 rather than noise divided by nothing.
    fn rho(&self, n: usize) -> f64 {
        let window = self.energy[n + self.template_len] - self.energy[n];
        if window < 1e-12 * self.template_len as f64 {
            return 0.0;
        }
        std::f64::consts::SQRT_2 * self.r[n] / (self.template_norm * window.sqrt())
    }

    fn candidates(&self) -> Vec<usize> {
        (0..self.r.len())
            .filter(|&n| self.rho(n) >= RHO_MIN)
            .collect()
    }

    /// Sub-sample position of the peak at `p`: the vertex of the parabola
    /// through the envelope around it (the envelope, not the oscillating
    /// real correlation, so a codec's phase shift does not move it).
    /// `None` at the buffer's first index, where the true maximum may lie
    /// before the buffer.
    fn peak_position(&self, p: usize) -> Option<f64> {
        let (a, b) = (self.r[p.checked_sub(1)?], self.r[p]);
        let Some(&c) = self.r.get(p + 1) else {
            return Some(p as f64);
        };
        let den = a - 2.0 * b + c;
        let is_max = b >= a && b >= c && den < 0.0;
        Some(p as f64 + if is_max { 0.5 * (a - c) / den } else { 0.0 })
    }
}

/// |Σ_m x[n+m]·conj(c[m])| for n in 0..=x.len()−c.len(), by overlap-save:
/// blocks of a power-of-two size (about four template lengths), each
/// yielding size − L + 1 outputs free of circular wrap-around.
fn correlate(x: &[f32], template: &[Complex]) -> Vec<f64> {
    let len = template.len();
    let outputs = x.len() + 1 - len;
    let size = (4 * len).next_power_of_two();
    let step = size - len + 1;
    let fft = Fft::new(size);
    let filter = fft.correlator(template);
    let mut buf = vec![Complex::default(); size];
    let mut r = Vec::with_capacity(outputs);
    for start in (0..outputs).step_by(step) {
        for (k, b) in buf.iter_mut().enumerate() {
            let v = x.get(start + k).copied().unwrap_or(0.0);
            *b = Complex::new(f64::from(v), 0.0);
        }
        fft.transform(&mut buf, false);
        buf.iter_mut().zip(&filter).for_each(|(b, &h)| *b = *b * h);
        fft.transform(&mut buf, true);
        let valid = step.min(outputs - start);
        r.extend(buf[..valid].iter().map(|v| v.norm_sqr().sqrt()));
    }
    r
}

/// An iterative radix-2 FFT of one power-of-two size.
struct Fft {
    /// e^(−2πik/n) for k < n/2.
    twiddles: Vec<Complex>,
}

impl Fft {
    fn new(size: usize) -> Self {
        assert!(size.is_power_of_two() && size >= 2);
        let step = -TAU / size as f64;
        Fft {
            twiddles: (0..size / 2)
                .map(|k| Complex::from_polar(1.0, step * k as f64))
                .collect(),
        }
    }

    fn size(&self) -> usize {
        2 * self.twiddles.len()
    }

    /// The spectrum to multiply a block's spectrum with so that the inverse
    /// transform gives its correlation with `template`: conj(FFT(c)),
    /// with the inverse's 1/n folded in.
    fn correlator(&self, template: &[Complex]) -> Vec<Complex> {
        let mut h = vec![Complex::default(); self.size()];
        h[..template.len()].copy_from_slice(template);
        self.transform(&mut h, false);
        let scale = 1.0 / self.size() as f64;
        h.iter()
            .map(|v| Complex::new(v.re * scale, -v.im * scale))
            .collect()
    }

    /// In place; the inverse is unscaled.
    fn transform(&self, buf: &mut [Complex], inverse: bool) {
        let n = buf.len();
        debug_assert_eq!(n, self.size());
        let shift = usize::BITS - n.trailing_zeros();
        for i in 0..n {
            let j = i.reverse_bits() >> shift;
            if i < j {
                buf.swap(i, j);
            }
        }
        let mut half = 1;
        while half < n {
            let stride = n / (2 * half);
            for block in buf.chunks_exact_mut(2 * half) {
                let (lo, hi) = block.split_at_mut(half);
                for (k, (a, b)) in lo.iter_mut().zip(hi.iter_mut()).enumerate() {
                    let w = self.twiddles[k * stride];
                    let w = if inverse { w.conj() } else { w };
                    let t = *b * w;
                    *b = *a - t;
                    *a = *a + t;
                }
            }
            half *= 2;
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Complex {
    re: f64,
    im: f64,
}

impl Complex {
    fn new(re: f64, im: f64) -> Self {
        Complex { re, im }
    }

    fn from_polar(magnitude: f64, phase: f64) -> Self {
        Complex::new(magnitude * phase.cos(), magnitude * phase.sin())
    }

    fn conj(self) -> Self {
        Complex::new(self.re, -self.im)
    }

    fn norm_sqr(self) -> f64 {
        self.re * self.re + self.im * self.im
    }
}

impl Add for Complex {
    type Output = Complex;
    fn add(self, o: Complex) -> Complex {
        Complex::new(self.re + o.re, self.im + o.im)
    }
}

impl Sub for Complex {
    type Output = Complex;
    fn sub(self, o: Complex) -> Complex {
        Complex::new(self.re - o.re, self.im - o.im)
    }
}

impl Mul for Complex {
    type Output = Complex;
    fn mul(self, o: Complex) -> Complex {
        Complex::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An odd sub-sample Unix time (ns) to start buffers at.
    const T0: u64 = 1_700_000_000_000_000_000 - 123_456_789;

    /// Tiny xorshift64 for deterministic noise.
    struct Noise(u64);

    impl Noise {
        /// Uniform in [−amplitude, amplitude).
        fn next(&mut self, amplitude: f32) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            amplitude * ((self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
        }
    }

    fn render_f32(first_ns: u64, rate: u32, n: usize) -> Vec<f32> {
        let source = StampSource::new(first_ns, rate);
        (0..n as u64).map(|i| value_at(source.time_of(i))).collect()
    }

    /// Slot starts of the stamps that lie wholly in a buffer, with their
    /// exact (fractional) sample index.
    fn complete_stamps(first_ns: u64, rate: u32, n: usize) -> Vec<(u64, f64)> {
        let need = (STAMP_S * f64::from(rate)).ceil() + 2.0;
        let first_slot = first_ns.div_ceil(PERIOD_NS) * PERIOD_NS;
        (0..)
            .map(|k| first_slot + k * PERIOD_NS)
            .map(|start| (start, (start - first_ns) as f64 * f64::from(rate) / 1e9))
            .take_while(|&(_, pos)| pos.round() + need <= n as f64)
            .collect()
    }

    /// Every complete stamp found, with the right slot, within `max_ms`.
    fn assert_finds_all(x: &[f32], first_ns: u64, rate: u32, max_ms: f64) -> Vec<Detection> {
        let found = detect(x, rate);
        let expected = complete_stamps(first_ns, rate, x.len());
        let slots = |v: &[(u64, f64)]| v.iter().map(|&(t, _)| slot_of(t)).collect::<Vec<_>>();
        assert_eq!(
            found.iter().map(|d| d.slot).collect::<Vec<_>>(),
            slots(&expected)
        );
        for (d, &(_, pos)) in found.iter().zip(&expected) {
            let err_ms = (d.pos - pos) * 1e3 / f64::from(rate);
            assert!(err_ms.abs() < max_ms, "{d:?}: off by {err_ms} ms");
        }
        found
    }

    #[test]
    fn crc_of_123456789_is_the_check_value() {
        assert_eq!(crc8(b"123456789"), 0xF4);
    }

    #[test]
    fn symbols_crcs_and_tones_match_section_8() {
        let vectors: [(u16, u8, [u8; 6], [u32; 6]); 5] = [
            (0, 0x00, [0; 6], [600; 6]),
            (1, 0x07, [0, 0, 0, 1, 0, 7], [600, 600, 600, 800, 600, 2000]),
            (
                1234,
                0x64,
                [0, 4, 13, 2, 6, 4],
                [600, 1400, 3200, 1000, 1800, 1400],
            ),
            (
                0xBEEF,
                0x1A,
                [11, 14, 14, 15, 1, 10],
                [2800, 3400, 3400, 3600, 800, 2600],
            ),
            (
                0xFFFF,
                0x24,
                [15, 15, 15, 15, 2, 4],
                [3600, 3600, 3600, 3600, 1000, 1400],
            ),
        ];
        for (slot, crc, syms, tones) in vectors {
            assert_eq!(crc8(&slot.to_be_bytes()), crc, "crc of {slot}");
            assert_eq!(symbols(slot), syms, "symbols of {slot}");
            assert_eq!(syms.map(|s| tone_hz(usize::from(s)) as u32), tones);
            assert_eq!(slot_of_symbols(syms), Some(slot));
        }
    }

    #[test]
    fn slot_numbers_match_section_8() {
        assert_eq!(slot_of(1_700_000_000_000_000_000), 57856);
        assert_eq!(slot_of(1_700_000_000_000_000_000), 0xE200);
        assert_eq!(slot_of(1_767_225_600_123_000_000), 29184);
    }

    #[test]
    fn waveform_follows_the_formulas_of_section_2() {
        // Chirp at 12.5 ms: 600·τ + 50 000·τ² = 15.3125 cycles, ramp 1.
        let chirp = 0.5 * (TAU * 0.3125).sin();
        assert!((f64::from(value_at(12_500_000)) - chirp).abs() < 1e-6);
        // Slot 1, symbol 5 (2000 Hz) at 10.125 ms: 20.25 cycles, a crest.
        assert!((value_at(PERIOD_NS + 150_125_000) - 0.5).abs() < 1e-6);
        for tau_ns in [0, 30_000_000, 35_000_000, 160_000_000, 499_999_999] {
            assert_eq!(
                value_at(T0 - T0 % PERIOD_NS + tau_ns),
                0.0,
                "at {tau_ns} ns"
            );
        }
    }

    #[test]
    fn a_source_renders_the_same_samples_frame_by_frame() {
        let mut whole = vec![0i16; 48_000];
        render_i16(T0, RATE, &mut whole);
        let mut source = StampSource::new(T0, RATE);
        let mut framed = Vec::new();
        for _ in 0..50 {
            let mut frame = [0i16; 960];
            source.next_frame(&mut frame);
            framed.extend_from_slice(&frame);
        }
        assert_eq!(framed, whole);
        assert_eq!(source.position(), 48_000);
        assert_eq!(source.time_of(48_000), T0 + NS_PER_S);
        assert_eq!(StampSource::new(0, 44_100).time_of(1), 22_676);
    }

    #[test]
    fn clean_round_trip_at_48k_is_within_0_05_ms() {
        let mut pcm = vec![0i16; 3 * 48_000];
        render_i16(T0, 48_000, &mut pcm);
        let x: Vec<f32> = pcm.iter().map(|&v| f32::from(v) / 32768.0).collect();
        let found = assert_finds_all(&x, T0, 48_000, 0.05);
        assert_eq!(found.len(), 6);
        assert_eq!(detect_i16(&pcm, 48_000), found);
        assert!(
            found.iter().all(|d| d.rho > 0.95 && d.margin_db > 20.0),
            "{found:?}"
        );
    }

    #[test]
    fn clean_round_trip_at_16k_and_44k1_is_within_0_05_ms() {
        for rate in [16_000, 44_100] {
            let t0 = 1_767_225_600_007_100_003;
            let found = assert_finds_all(&render_f32(t0, rate, 3 * rate as usize), t0, rate, 0.05);
            assert_eq!(found.len(), 5, "at {rate} Hz");
        }
    }

    #[test]
    fn weak_stamp_in_noise_is_still_found() {
        let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
        let x: Vec<f32> = render_f32(T0, RATE, 3 * 48_000)
            .iter()
            .map(|v| 0.1 * v + noise.next(0.05))
            .collect();
        let found = assert_finds_all(&x, T0, RATE, 0.05);
        assert!(
            found.iter().all(|d| d.rho < 0.95),
            "noise should lower rho: {found:?}"
        );
    }

    #[test]
    fn a_corrupted_symbol_is_rejected_never_misread() {
        let (start, pos) = complete_stamps(T0, RATE, 48_000)[0];
        let slot = slot_of(start);
        let wrong_tone = tone_hz(usize::from((symbols(slot)[2] + 5) % 16));
        // A valid but wrong tone (CRC fails), and one between two tones (no margin).
        for hz in [wrong_tone, 1500.0] {
            let mut x = render_f32(T0, RATE, 2 * 48_000);
            let sym_start = pos + (DATA_START_S + 2.0 * SYMBOL_S) * 48_000.0;
            for (i, v) in x.iter_mut().enumerate() {
                let u = (i as f64 - sym_start) / 48_000.0;
                if (0.0..SYMBOL_S).contains(&u) {
                    *v = (AMPLITUDE * ramp(u, SYMBOL_S) * (TAU * hz * u).sin()) as f32;
                }
            }
            let found = detect(&x, RATE);
            let good: Vec<u16> = complete_stamps(T0, RATE, x.len())[1..]
                .iter()
                .map(|&(t, _)| slot_of(t))
                .collect();
            assert_eq!(
                found.iter().map(|d| d.slot).collect::<Vec<_>>(),
                good,
                "{hz} Hz"
            );
        }
    }

    #[test]
    fn silence_and_white_noise_give_nothing() {
        assert!(detect(&vec![0.0; 3 * 48_000], RATE).is_empty());
        assert!(detect_i16(&vec![0; 16_000], 16_000).is_empty());
        for (seed, gain) in [(1, 0.5), (2, 0.001), (3, 1.0)] {
            let mut noise = Noise(seed * 0x2545_F491_4F6C_DD1D);
            let x: Vec<f32> = (0..3 * 48_000).map(|_| noise.next(gain)).collect();
            assert!(detect(&x, RATE).is_empty(), "noise at {gain}");
        }
    }

    #[test]
    fn short_buffers_and_low_rates_give_nothing() {
        let x = render_f32(T0, RATE, 48_000);
        let (_, pos) = complete_stamps(T0, RATE, x.len())[0];
        let cut = pos as usize + 7000;
        assert!(detect(&x[..cut], RATE).is_empty(), "data past the end");
        assert!(detect(&x[..100], RATE).is_empty());
        assert!(detect(&[], RATE).is_empty());
        assert!(detect(&render_f32(T0, 4_000, 4_000), 4_000).is_empty());
    }

    #[test]
    fn a_stamp_cut_by_the_buffer_start_is_not_reported() {
        let start = T0.div_ceil(PERIOD_NS) * PERIOD_NS;
        let found = detect(&render_f32(start + 40_000, RATE, 48_000), RATE);
        assert!(found.iter().all(|d| d.slot != slot_of(start)), "{found:?}");
    }

    #[test]
    fn slot_start_round_trips_through_the_slot_number() {
        for t in [
            T0,
            1_767_225_600_123_000_000,
            1_000_000_000,
            65_536 * PERIOD_NS,
        ] {
            let start = t - t % PERIOD_NS;
            // Receiver times from the stamp's start to just before the wrap (9.1 h).
            for after_ns in [
                0,
                26_500_000,
                499_999_999,
                3_600 * NS_PER_S,
                SLOTS * PERIOD_NS - 1,
            ] {
                assert_eq!(
                    slot_start_ns(slot_of(t), start + after_ns),
                    start,
                    "{t} + {after_ns}"
                );
            }
        }
        // Closer to the epoch than one wrap: the first slot with that number.
        assert_eq!(slot_start_ns(7, 0), 7 * PERIOD_NS);
    }
}
