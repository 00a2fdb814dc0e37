//! What the sound costs a core: the microphone's Opus encode, the talker's
//! decode (with 5 % of its packets lost: FEC and concealment), the jitter
//! buffer, the half-duplex gate and the echo canceller, per 20 ms frame, on
//! 60 s of the audio stamp mixed with a noisy room. Prints the time per
//! frame and the share of one core at real time; then the echo canceller in
//! simulated rooms (src/audio/room.rs): its attenuation and the near-end
//! stamps that survive double talk. Asserts nothing (bench/audio.sh runs it
//! natively and under qemu-aarch64).
//!
//!   audio_bench [SECONDS] [ROOMS]

use std::time::{Duration, Instant};

use rtcam::audio::gate::HalfDuplex;
use rtcam::audio::jitter::JitterBuffer;
use rtcam::audio::opus::{VoiceDecoder, VoiceEncoder};
use rtcam::audio::room::{self, Room};
use rtcam::audio::{FRAME, FRAME_TIME, RATE, stamp};

fn main() {
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let (seconds, rooms) = (arg(1, 60), arg(2, 20));
    let frames = (seconds * 1000 / 20) as usize;
    let mut pcm = vec![0i16; frames * FRAME];
    stamp::render_i16(1_767_225_600_000_000_000, RATE, &mut pcm);
    // A room: low noise under the stamp (xorshift, deterministic).
    let mut x = 0x2545_f491u32;
    for s in pcm.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *s = s.saturating_add((x % 600) as i16 - 300);
    }
    let packets = encode(&pcm, frames);
    decode(&packets, frames);
    gate(&pcm, frames);
    echo_rooms(rooms as u32);
}

fn encode(pcm: &[i16], frames: usize) -> Vec<std::sync::Arc<[u8]>> {
    let mut encoder = VoiceEncoder::new(32).expect("encoder");
    let t = Instant::now();
    let packets: Vec<_> = pcm
        .chunks(FRAME)
        .map(|f| encoder.encode(f).expect("encode"))
        .collect();
    report("Opus encode, 32 kbit/s, FEC", t.elapsed(), frames);
    packets
}

fn decode(packets: &[std::sync::Arc<[u8]>], frames: usize) {
    let mut decoder = VoiceDecoder::new().expect("decoder");
    let mut jitter = JitterBuffer::new();
    let t0 = Instant::now();
    let t = Instant::now();
    let mut lost = 0;
    for (n, p) in packets.iter().enumerate() {
        let at = t0 + FRAME_TIME * n as u32;
        // 5 % lost, deterministically.
        if n % 20 != 7 {
            jitter.push(at, n as u64, (n * FRAME) as u64, p.to_vec());
        } else {
            lost += 1;
        }
        let slot = jitter.pop(at + Duration::from_millis(1));
        std::hint::black_box(decoder.decode(&slot));
    }
    report(
        &format!("jitter buffer + Opus decode, {lost} of {frames} lost"),
        t.elapsed(),
        frames,
    );
    println!(
        "  recovered by FEC {}, concealed {}",
        decoder.recovered, decoder.concealed
    );
}

fn gate(pcm: &[i16], frames: usize) {
    let t0 = Instant::now();
    let mut gate = HalfDuplex::new();
    let t = Instant::now();
    let mut frame = vec![0i16; FRAME];
    for (n, chunk) in pcm.chunks(FRAME).enumerate() {
        frame.copy_from_slice(chunk);
        let voiced = (n % 100 < 50).then_some(t0 + FRAME_TIME * n as u32);
        gate.apply(t0 + FRAME_TIME * n as u32, voiced, &mut frame);
        std::hint::black_box(&frame);
    }
    report("half-duplex gate", t.elapsed(), frames);
}

/// The echo canceller (render + capture) in `rooms` rooms, 10 s each: the
/// test's room with far-end talkers 1, 2, ... (the test's is 18).
fn echo_rooms(rooms: u32) {
    let (mut busy, mut frames, mut sent, mut heard, mut passed) = (Duration::ZERO, 0, 0, 0, 0);
    let mut atten = Vec::new();
    for talker in 1..=rooms {
        let room = Room {
            far_seed: talker,
            ..Room::default()
        };
        let t = room::trial(&room);
        println!(
            "  talker {talker}: echo {:.1} dB down after 2 s (worst second {:.1}), \
             stamps {}/{}, ERLE {:.0} dB, delay {:?} ms",
            t.attenuation_db,
            t.worst_second_db,
            t.stamps_heard,
            t.stamps_sent,
            t.stats.erle_db.unwrap_or(f64::NAN),
            t.stats.delay_ms,
        );
        busy += t.per_frame * t.stats.frames as u32;
        frames += t.stats.frames as usize;
        (sent, heard) = (sent + t.stamps_sent, heard + t.stamps_heard);
        passed += usize::from(t.attenuation_db >= 25.0 && t.stamps_heard == t.stamps_sent);
        atten.push(t.attenuation_db);
    }
    atten.sort_by(f64::total_cmp);
    report(
        "echo canceller (AEC3, render + capture)",
        busy,
        frames.max(1),
    );
    println!(
        "  {rooms} rooms: echo down {:.1} dB (median; worst {:.1}), near-end stamps \
         through double talk {heard}/{sent}, rooms with >= 25 dB and every stamp {passed}",
        atten.get(atten.len() / 2).copied().unwrap_or(f64::NAN),
        atten.first().copied().unwrap_or(f64::NAN),
    );
}

fn report(what: &str, took: Duration, frames: usize) {
    let per_frame = took.as_secs_f64() / frames as f64;
    println!(
        "{what}: {:.1} us a 20 ms frame, {:.2} % of one core at real time",
        per_frame * 1e6,
        per_frame / 0.020 * 100.0
    );
}
