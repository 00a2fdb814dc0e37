//! The talk-back path with what a hostile viewer can send: packets of any
//! sequence number, RTP time and payload, at any arrival time, into the
//! jitter buffer, and what it plays out through the Opus decoder. Frames
//! of the right length or concealment, never a panic (the buffer's
//! bound on memory is its own unit test's).
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rtcam::audio::jitter::JitterBuffer;
use rtcam::audio::opus::VoiceDecoder;

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut jitter = JitterBuffer::new();
    let mut decoder = VoiceDecoder::new().expect("a decoder");
    let mut now = t0;
    let mut rest = data;
    // Each record: [kind, dt, seq lo, seq hi, ts lo, ts hi, len, payload...].
    while let [kind, dt, s0, s1, t_lo, t_hi, len, tail @ ..] = rest {
        now += Duration::from_millis(*dt as u64 % 64);
        let n = (*len as usize).min(tail.len());
        let (payload, next) = tail.split_at(n);
        rest = next;
        if kind & 1 == 0 {
            let seq = u16::from_le_bytes([*s0, *s1]) as u64 + ((*kind as u64) << 16);
            let ts = u16::from_le_bytes([*t_lo, *t_hi]) as u64 * 120 + ((*kind as u64) << 20);
            jitter.push(now, seq, ts, payload.to_vec());
        } else {
            let slot = jitter.pop(now);
            let pcm = decoder.decode(&slot);
            assert!(!pcm.is_empty() && pcm.len() <= 5760, "{}", pcm.len());
        }
    }
});
