//! The jitter buffer driven behind emulated links, on simulated time.

use super::*;
use std::collections::HashMap;

use crate::xorshift::XorShift;

/// `p` % of the time.
fn percent(rng: &mut XorShift, p: u64) -> bool {
    rng.below(100) < p
}

/// The browser and the path to the device.
#[derive(Clone, Copy)]
struct Link {
    frame_ms: u64,
    base_ms: u64,
    /// The jitter's range at a time (ms since the start): each packet
    /// gets a uniform extra delay in `0..=jitter`.
    jitter_ms: fn(u64) -> u64,
    /// How often (%) an even packet is delayed past its odd neighbour.
    swap_pct: u64,
    loss_pct: u64,
    /// The sender talks this long, then stops.
    talk_ms: u64,
    seed: u64,
}

const CLEAN: Link = Link {
    frame_ms: 20,
    base_ms: 30,
    jitter_ms: |_| 0,
    swap_pct: 0,
    loss_pct: 0,
    talk_ms: 10_000,
    seed: 0x9e37_79b9_7f4a_7c15,
};
/// The player wakes this far into each frame period.
const POP_PHASE: u64 = 7;
const SEQ0: u64 = 70_000;
const TS0: u64 = 5_000_000_000;

#[derive(Default)]
struct Run {
    /// Every pop: (ms, what it played, stats after it).
    pops: Vec<(u64, Playout, JitterStats)>,
    /// Sender-side indices of the packets played, in order.
    played: Vec<u64>,
    /// (pop ms, ms each played packet waited in the buffer).
    waits: Vec<(u64, u64)>,
    /// Audio buffered just before each pop that played a packet, ms.
    levels: Vec<u32>,
    lost_on_link: Vec<u64>,
    sent: u64,
    last_arrival: u64,
}

fn payload(i: u64) -> Vec<u8> {
    let mut p = i.to_le_bytes().to_vec();
    p.resize(40, 0xa5); // speech-sized: never "quiet"
    p
}

fn index_of(p: &[u8]) -> u64 {
    u64::from_le_bytes(p[..8].try_into().unwrap())
}

/// Everything on one simulated clock, 1 ms steps: the sender emits a
/// packet every frame, the link delays (or drops) it, the player pops
/// every frame.
fn simulate(link: Link, total_ms: u64) -> (Run, JitterBuffer) {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut rng = XorShift(link.seed);
    let mut jb = JitterBuffer::new();
    let mut wire: Vec<(u64, u64)> = Vec::new();
    let mut arrived = HashMap::new();
    let mut run = Run::default();
    for now in 0..total_ms {
        if now < link.talk_ms && now % link.frame_ms == 0 {
            let i = now / link.frame_ms;
            run.sent += 1;
            if percent(&mut rng, link.loss_pct) {
                run.lost_on_link.push(i);
            } else {
                let mut delay = link.base_ms + rng.below((link.jitter_ms)(now) + 1);
                if i.is_multiple_of(2) && percent(&mut rng, link.swap_pct) {
                    delay += link.frame_ms + 1;
                }
                wire.push((now + delay, i));
            }
        }
        for &(_, i) in wire.iter().filter(|w| w.0 == now) {
            arrived.insert(i, now);
            run.last_arrival = now;
            let ts = TS0 + i * link.frame_ms * 48;
            jb.push(at(now), SEQ0 + i, ts, payload(i));
        }
        wire.retain(|w| w.0 != now);
        if now % link.frame_ms == POP_PHASE % link.frame_ms {
            let before = jb.stats().buffered_ms;
            let out = jb.pop(at(now));
            if let Playout::Packet(p) = &out {
                let i = index_of(p);
                run.played.push(i);
                run.waits.push((now, now - arrived[&i]));
                run.levels.push(before);
            }
            run.pops.push((now, out, jb.stats()));
        }
    }
    (run, jb)
}

/// Mean and max of the time the packets played waited in the buffer,
/// and of the audio buffered just before the pops that played them.
fn report(name: &str, run: &Run) -> (f64, u64) {
    let waits: Vec<u64> = run.waits.iter().map(|w| w.1).collect();
    let mean = waits.iter().sum::<u64>() as f64 / waits.len() as f64;
    let max = waits.iter().copied().max().unwrap_or(0);
    let levels = &run.levels;
    let buf_mean = levels.iter().sum::<u32>() as f64 / levels.len() as f64;
    let buf_max = levels.iter().copied().max().unwrap_or(0);
    let s = run.pops.last().unwrap().2;
    eprintln!(
        "{name}: wait mean {mean:.1} ms max {max} ms; buffered before pop mean \
         {buf_mean:.1} ms max {buf_max} ms; {s:?}"
    );
    (mean, max)
}

fn is_gap(p: &Playout) -> bool {
    matches!(p, Playout::Conceal | Playout::Silence)
}

#[test]
fn a_clean_link_plays_every_packet_in_order_at_the_minimum_target() {
    for phase_shift in [0, 5, 13, 19] {
        let link = Link {
            base_ms: 30 + phase_shift,
            ..CLEAN
        };
        let (run, jb) = simulate(link, 11_000);
        assert_eq!(run.played, (0..run.sent).collect::<Vec<_>>());
        let first = run
            .pops
            .iter()
            .position(|p| matches!(p.1, Playout::Packet(_)));
        let talking = &run.pops[first.unwrap()..run.sent as usize];
        assert!(talking.iter().all(|p| matches!(p.1, Playout::Packet(_))));
        assert!(run.pops.iter().all(|p| p.2.target_ms == 20));
        let s = jb.stats();
        assert_eq!(
            (s.lost, s.fec_recovered, s.inserted, s.skipped),
            (0, 0, 0, 0)
        );
        assert_eq!((s.late, s.underruns, s.duplicates), (0, 0, 0));
        let (_, max) = report(&format!("clean +{phase_shift} ms"), &run);
        assert!(max < 20);
    }
}

#[test]
fn reordering_plays_every_packet_in_order_once_the_target_has_adapted() {
    let link = Link {
        swap_pct: 30,
        talk_ms: 20_000,
        ..CLEAN
    };
    let (run, jb) = simulate(link, 20_500);
    assert!(
        run.played.windows(2).all(|w| w[0] < w[1]),
        "never out of order"
    );
    let adapted = 2_000;
    let after: Vec<u64> = (run.waits.iter().zip(&run.played))
        .filter(|(w, _)| w.0 >= adapted)
        .map(|(_, &i)| i)
        .collect();
    assert_eq!(
        after,
        (after[0]..run.sent).collect::<Vec<_>>(),
        "none missed"
    );
    let talking = run
        .pops
        .iter()
        .filter(|p| p.0 >= adapted && p.0 < link.talk_ms);
    assert!(talking.clone().all(|p| matches!(p.1, Playout::Packet(_))));
    let s = jb.stats();
    assert!(s.target_ms > 40 && s.target_ms <= 60, "{s:?}");
    report("reordering", &run);
}

#[test]
fn random_loss_fills_each_lost_slot_at_its_own_pop_without_stalling() {
    let link = Link {
        loss_pct: 5,
        talk_ms: 30_000,
        ..CLEAN
    };
    let (run, jb) = simulate(link, 30_100);
    let s = jb.stats();
    let lost = &run.lost_on_link;
    // Every packet that got through plays, in order; nothing is late.
    let expect: Vec<u64> = (0..run.sent).filter(|i| !lost.contains(i)).collect();
    assert_eq!(run.played, expect);
    assert_eq!(s.late, 0);
    // Every lost slot is filled once, by FEC or concealment...
    assert_eq!(s.fec_recovered + s.lost, lost.len() as u64, "{s:?}");
    assert!(s.fec_recovered > s.lost, "{s:?}");
    // ...and nothing else is played but the frames that grew the delay
    // once loss was frequent enough for FEC to be worth a frame.
    let first = run
        .pops
        .iter()
        .position(|p| p.1 != Playout::Silence)
        .unwrap();
    let pops = &run.pops[first..run.sent as usize + 2];
    let not_packet = pops.iter().filter(|p| !matches!(p.1, Playout::Packet(_)));
    let silence = pops.iter().filter(|p| p.1 == Playout::Silence).count() as u64;
    assert_eq!(
        not_packet.count() as u64,
        lost.len() as u64 + s.inserted + silence
    );
    assert!(s.inserted <= 2 && silence == 0, "{s:?}");
    // No stall: a run of gap pops is never longer than the run of
    // losses behind it.
    let mut burst = 0;
    let max_burst = (0..run.sent)
        .map(|i| {
            burst = if lost.contains(&i) { burst + 1 } else { 0 };
            burst
        })
        .max()
        .unwrap();
    let mut run_len = 0;
    for p in &pops[1..] {
        run_len = if is_gap(&p.1) { run_len + 1 } else { 0 };
        assert!(run_len <= max_burst.max(1), "stalled at {} ms", p.0);
    }
    eprintln!(
        "loss: {} lost on the link, longest burst {max_burst}",
        lost.len()
    );
    report("5 % loss", &run);
}

#[test]
fn jitter_raises_the_target_which_shrinks_back_once_it_stops() {
    let link = Link {
        jitter_ms: |t| if t < 6_000 { 40 } else { 0 },
        talk_ms: 20_000,
        ..CLEAN
    };
    let (run, jb) = simulate(link, 20_000);
    let at = |ms: u64| run.pops.iter().find(|p| p.0 >= ms).unwrap().2;
    let during = at(5_900);
    assert!(during.target_ms >= 50, "{during:?}");
    let grown = run.pops.iter().find(|p| p.2.target_ms >= 50).unwrap().0;
    let waits = |from: u64, to: u64| {
        let w: Vec<u64> = (run.waits.iter())
            .filter(|w| w.0 >= from && w.0 < to)
            .map(|w| w.1)
            .collect();
        (
            w.iter().sum::<u64>() / w.len() as u64,
            *w.iter().max().unwrap(),
        )
    };
    eprintln!(
        "jitter: target 50 ms by {grown} ms; {during:?}; waits (mean, max) 1-6 s {:?}, 17-20 s {:?}",
        waits(1_000, 6_000),
        waits(17_000, 20_000)
    );
    let after = jb.stats();
    assert_eq!(after.target_ms, 20, "{after:?}");
    let late_waits: Vec<u64> = (run.waits.iter())
        .filter(|w| w.0 >= 17_000)
        .map(|w| w.1)
        .collect();
    assert!(late_waits.iter().all(|&w| w < 40), "{late_waits:?}");
    let back = run
        .pops
        .iter()
        .find(|p| p.0 > 6_000 && p.2.target_ms == 20)
        .unwrap()
        .0;
    let settled = run.waits.iter().rev().find(|w| w.1 >= 40).unwrap().0;
    eprintln!(
        "jitter: target {} ms at 5.9 s, {} ms again {} ms after the jitter stopped; \
         packets wait under 40 ms from {} ms after; {} skipped",
        during.target_ms,
        after.target_ms,
        back - 6_000,
        settled - 6_000,
        after.skipped
    );
}

#[test]
fn a_talk_spurt_ends_in_silence_without_counting_underruns() {
    let link = Link {
        talk_ms: 2_000,
        ..CLEAN
    };
    let (run, mut jb) = simulate(link, 3_000);
    let idle_from = run.last_arrival + IDLE_AFTER.as_millis() as u64 + 20;
    let tail = run.pops.iter().filter(|p| p.0 > idle_from);
    assert!(tail.clone().all(|p| p.1 == Playout::Silence));
    let s = jb.stats();
    assert_eq!((s.underruns, s.lost, s.buffered_ms), (0, 0, 0), "{s:?}");
    // A new spurt fills and plays again.
    let t0 = Instant::now();
    jb.push(t0, SEQ0 + 500, TS0 + 3_000 * 48, payload(500));
    assert_eq!(
        jb.pop(t0 + Duration::from_millis(5)),
        Playout::Packet(payload(500))
    );
}

#[test]
fn a_spurt_after_the_senders_clock_stood_still_plays_from_its_start() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut jb = JitterBuffer::new();
    let mut played = Vec::new();
    for i in 0..100u64 {
        // 50 packets, 600 ms without any (nor RTP time passing), 50 more.
        let sent = if i < 50 { 20 * i } else { 20 * i + 600 };
        jb.push(at(sent + 30), SEQ0 + i, TS0 + 960 * i, payload(i));
        if let Playout::Packet(p) = jb.pop(at(sent + 37)) {
            played.push(index_of(&p));
        }
        if i == 49 {
            for n in 1..30 {
                let _ = jb.pop(at(sent + 37 + 20 * n));
            }
        }
    }
    assert_eq!(played, (0..100).collect::<Vec<_>>());
    let s = jb.stats();
    assert_eq!((s.late, s.resets, s.target_ms), (0, 0, 20), "{s:?}");
}

#[test]
fn a_flood_of_random_packets_keeps_memory_bounded() {
    let mut rng = XorShift(7);
    let mut jb = JitterBuffer::new();
    let mut now = Instant::now();
    let mut max_len = 0;
    for n in 0..20_000u64 {
        let (seq, ts) = match n / 2_000 % 3 {
            // Within the window, many times the capacity.
            0 => (rng.below(5_000), 1_000_000 + rng.below(RATE)),
            1 => (rng.next_u64(), rng.next_u64()),
            _ => (u64::MAX - rng.below(100), u64::MAX - rng.below(RATE)),
        };
        jb.push(now, seq, ts, vec![0; rng.below(200) as usize]);
        max_len = max_len.max(jb.packets.len());
        assert!(jb.packets.len() <= CAPACITY);
        // The first 500 of each 2000 come in one burst, unplayed.
        if n % 2_000 >= 500 && percent(&mut rng, 30) {
            now += Duration::from_millis(rng.below(25));
            let _ = jb.pop(now);
        }
    }
    let s = jb.stats();
    assert!(s.overflow_dropped > 0 && s.resets > 0, "{s:?}");
    eprintln!("flood: at most {max_len} packets held; {s:?}");
}

#[test]
fn late_and_duplicate_packets_are_dropped_and_counted() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut jb = JitterBuffer::new();
    let mut out = Vec::new();
    for i in 0..8u64 {
        if i != 3 {
            jb.push(at(20 * i), SEQ0 + i, TS0 + 960 * i, payload(i));
        }
        if i == 4 {
            jb.push(at(90), SEQ0 + 3, TS0 + 960 * 3, payload(3)); // after its pop
            jb.push(at(90), SEQ0 + 4, TS0 + 960 * 4, payload(4)); // buffered
            jb.push(at(90), SEQ0 + 1, TS0 + 960, payload(1)); // played
        }
        out.push(jb.pop(at(20 * i + 5)));
    }
    let p = |i| Playout::Packet(payload(i));
    assert_eq!(
        out,
        [p(0), p(1), p(2), Playout::Conceal, p(4), p(5), p(6), p(7)]
    );
    let s = jb.stats();
    assert_eq!((s.late, s.duplicates, s.packets), (1, 2, 10), "{s:?}");
}

#[test]
fn ten_ms_packets_play_one_per_pop() {
    let link = Link {
        frame_ms: 10,
        ..CLEAN
    };
    let (run, jb) = simulate(link, 10_500);
    assert_eq!(run.played, (0..run.sent).collect::<Vec<_>>());
    let first = run
        .pops
        .iter()
        .position(|p| p.1 != Playout::Silence)
        .unwrap();
    let talking = &run.pops[first..run.sent as usize];
    assert!(talking.iter().all(|p| matches!(p.1, Playout::Packet(_))));
    let s = jb.stats();
    assert_eq!(
        (s.frame_samples, s.target_ms, s.lost, s.late),
        (480, 20, 0, 0)
    );
    report("10 ms packets", &run);
}

#[test]
fn a_restarted_stream_resets_and_plays_on() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut jb = JitterBuffer::new();
    let mut played = 0;
    for i in 0..100u64 {
        let (seq, ts) = if i < 50 {
            (i, 960 * i)
        } else {
            (9_000 + i, 1 << 40)
        };
        let ts = if i < 50 { ts } else { ts + 960 * i };
        jb.push(at(20 * i), seq, ts, payload(i));
        played += matches!(jb.pop(at(20 * i + 5)), Playout::Packet(_)) as u32;
    }
    let s = jb.stats();
    assert_eq!(s.resets, 1, "{s:?}");
    assert_eq!(played, 100);
}

#[test]
fn a_stalled_player_catches_up_at_once_and_hands_the_skipped_packets_over() {
    // Packets every 20 ms; the player stalls for 600 ms (a starved
    // thread), then pops every 20 ms again.
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut jb = JitterBuffer::new();
    let mut skipped = Vec::new();
    let mut played = Vec::new();
    for now in 0..3_000u64 {
        if now % 20 == 0 {
            let i = now / 20;
            jb.push(at(now + 5), SEQ0 + i, TS0 + i * 960, payload(i));
        }
        let stalled = (1_000..1_600).contains(&now);
        if now % 20 == 7 && !stalled {
            if let Playout::Packet(p) = jb.pop(at(now)) {
                played.push((now, index_of(&p)));
            }
            skipped.extend(jb.take_skipped().map(|p| index_of(&p)));
        }
    }
    assert!(!skipped.is_empty(), "the backlog was skipped");
    // Every packet is either played or handed over to be decoded and
    // dropped: the decoder sees an unbroken stream.
    let mut seen: Vec<u64> = played
        .iter()
        .map(|p| p.1)
        .chain(skipped.iter().copied())
        .collect();
    seen.sort_unstable();
    let first = seen[0];
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");
    assert!(first <= 2);
    // Within 200 ms of the stall's end the delay is back near the need.
    let behind = |t: u64| {
        let (when, i) = *played.iter().find(|p| p.0 >= t).unwrap();
        when - i * 20
    };
    assert!(
        behind(1_800) <= 90,
        "{} ms behind 200 ms after the stall",
        behind(1_800)
    );
    println!(
        "behind: {} ms just after the stall, {} ms 200 ms later, {} ms 1.3 s later",
        behind(1_600),
        behind(1_800),
        behind(2_900)
    );
}
