//! The talker's jitter buffer, sans-IO: Opus packets in as they arrive,
//! one slot of playout out whenever the speaker asks.
//!
//! No clocks, threads or IO in here: every call takes the time it happens
//! at, so the policy is tested on simulated time (the tests below drive it
//! behind an emulated link, like str0m's own tests).
//!
//! # The model
//!
//! Playout follows RTP time. Each packet fills one *slot* of `frame`
//! samples (learned from the timestamp steps: 960 for 20 ms, 480 for 10 ms);
//! each `pop` plays the next slot. Every packet's *transit* (arrival time
//! minus RTP time, in samples) is kept for the last `WINDOW` (128) packets; the
//! fastest of them is the reference. The *delay* is how long before its
//! slot's pop a packet with that fastest transit arrived: a packet whose
//! transit is more than the delay above the fastest one misses its pop.
//!
//! # The policy
//!
//! - **Need.** The delay should cover the 95th percentile of transit above
//!   the fastest, plus a quarter of it as margin. When more than 1 % of
//!   slots lose their packet, one frame more: Opus's in-band FEC for a slot
//!   rides in the *next* packet, which must be here when the lost slot is
//!   due, and 20 ms more is a better trade than concealment. A late packet
//!   raises the need at once to what would have caught it (a boost that
//!   decays by 20 ms a second). The target is need + one frame, clamped to
//!   [min, max] (20-200 ms by default).
//! - **Grow quickly, at a gap.** When a slot's packet is missing and the
//!   delay is under the need, the buffer holds: it conceals one frame
//!   without consuming the slot, so a reordered packet still plays. Growing
//!   only at gaps means it never interrupts audio that is playing well (too
//!   little delay shows as gaps first), and one hold per slot means growing
//!   never stalls for more than a frame: a link that needs more delay keeps
//!   making gaps, so it gets a frame more at each until it has enough.
//! - **Never wait on a loss otherwise.** A missing slot with enough delay
//!   is recovered from the next packet's FEC when that is here, else
//!   concealed; either way the slot is consumed at its own pop.
//! - **Shrink slowly.** When the delay has exceeded the need by more than
//!   a frame for 1 s, one packet is skipped (a quiet one, by payload size;
//!   any after 2 s), then the clock starts again: at most 20 ms a second.
//!   A missing slot while over the need is skipped for free instead.
//! - **Talk spurts.** The first packet starts filling: silence until the
//!   buffered audio (or the time since that packet) reaches the target.
//!   200 ms with nothing buffered ends the spurt (browsers stop sending when
//!   the talker lets go or mutes): silence, not concealment, and the empty
//!   pops before that are counted as underruns only if audio then resumes.
//!   A transit jump over 1 s (a restarted stream) forgets everything; a
//!   spurt starting with one over the max target forgets the timing only.
//!
//! Memory is bounded: at most [`CAPACITY`] packets; past that the furthest
//! in RTP time is dropped (the nearest are needed first) and counted.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound::{Excluded, Unbounded};
use std::time::{Duration, Instant};

/// Opus's RTP clock is always 48 kHz, whatever the codec runs at inside.
const RATE: u64 = 48_000;
/// 20 ms: what browsers send unless told otherwise (`ptime`).
const DEFAULT_FRAME: u64 = 960;
/// The most packets held: 1 s of 20 ms packets, five times the largest
/// target, so a burst after a stall fits but a flood cannot grow memory.
pub const CAPACITY: usize = 50;
/// Transits kept for the jitter estimate: about 2.5 s of 20 ms packets, so
/// a 95th percentile means the worst 6 packets are not covered.
const WINDOW: usize = 128;
/// Nothing buffered for this long: the talk spurt is over.
const IDLE_AFTER: Duration = Duration::from_millis(200);
/// A transit jump bigger than this (1 s) is not jitter but a new stream.
const RESTART_JUMP: u64 = RATE;
/// Excess delay must last this long before a quiet packet is skipped...
const SHRINK_QUIET_AFTER: Duration = Duration::from_secs(1);
/// ...and this long before any packet is.
const SHRINK_AFTER: Duration = Duration::from_secs(2);
/// An Opus packet this small carries silence or comfort noise: skipping it
/// is not heard.
const QUIET_BYTES: usize = 10;
/// The loss rate is fixed point, this is 100 %.
const LOSS_ONE: u32 = 1 << 16;
/// Above 1 % of slots lost, keep a frame more for FEC.
const LOSS_FOR_FEC: u32 = LOSS_ONE / 100;
/// The loss rate's memory, slots (about 2.5 s of 20 ms slots).
const LOSS_MEMORY: u32 = 128;
/// The late-packet boost decays by one frame every this many pops: 20 ms/s.
const BOOST_DECAY_POPS: u64 = 50;
/// More than this many frames over the need (a backlog after a stall, 60
/// ms) is caught up at once instead of a packet a second: a starved
/// speaker thread must not leave the talker seconds late.
const CATCH_UP_FRAMES: u64 = 3;
/// The most empty slots skipped for free in one pop.
const MAX_FREE_SKIPS: usize = 64;

/// What the speaker should play for the next slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// Decode this packet normally.
    Packet(Vec<u8>),
    /// The packet for this slot was lost but the next one is here: decode
    /// the NEXT packet's in-band FEC (libopus decode with fec=true) to
    /// recover this slot. The next packet stays in the buffer for the next
    /// pop.
    Fec(Vec<u8>),
    /// Nothing to recover this slot from: run the decoder's packet-loss
    /// concealment.
    Conceal,
    /// No talker (buffer idle, or still filling to its target): play
    /// silence, the decoder does nothing.
    Silence,
}

/// Counters (since creation, kept across resets) and the current state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets handed to `push`, dropped ones included.
    pub packets: u64,
    /// Packets that arrived after their slot was played: dropped.
    pub late: u64,
    /// Packets already seen (same sequence number or RTP time): dropped.
    pub duplicates: u64,
    /// Slots concealed because their packet was missing (FEC not possible).
    pub lost: u64,
    /// Slots recovered from the next packet's FEC.
    pub fec_recovered: u64,
    /// Times the buffer ran dry mid-spurt (audio resumed after).
    pub underruns: u64,
    /// Packets dropped because the buffer was full.
    pub overflow_dropped: u64,
    /// `reset` calls and stream restarts (transit jumps over 1 s).
    pub resets: u64,
    /// Concealed frames added to grow the delay (slot not consumed).
    pub inserted: u64,
    /// Packets skipped to shrink the delay.
    pub skipped: u64,
    /// The delay aimed at, ms (need + one frame).
    pub target_ms: u32,
    /// Audio buffered ahead of the playout point, holes included, ms.
    pub buffered_ms: u32,
    /// Samples per slot, as learned from the stream.
    pub frame_samples: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No talker: silence until a packet comes.
    Idle,
    /// A spurt started at `since`: silence until the target is buffered.
    Filling {
        since: Instant,
    },
    Playing,
}

/// Pops that found nothing buffered, not yet known to be an underrun (audio
/// resumes) or the end of the spurt (it does not).
#[derive(Debug, Clone, Copy)]
struct Starve {
    since: Instant,
    pops: u64,
}

/// See the module's documentation for the policy.
#[derive(Debug)]
pub struct JitterBuffer {
    min_target: u64,
    max_target: u64,
    /// Buffered payloads by RTP time; every key is `>= floor`.
    packets: BTreeMap<u64, Vec<u8>>,
    mode: Mode,
    /// The RTP time where the next slot starts.
    next_ts: u64,
    /// Packets before this RTP time are late: their slot has been played.
    floor: u64,
    /// The end of the newest packet accepted (RTP time + 1).
    heard_end: u64,
    /// The slot last held to grow the delay: one hold per slot, so growing
    /// never stalls more than a frame at a time.
    held: Option<u64>,
    frame: u64,
    frame_known: bool,
    /// The newest packet by sequence: (seq, rtp_time, step from the one
    /// before it), to learn the frame size.
    newest: Option<(u64, u64, u64)>,
    /// Sequence numbers seen: `seen` bit i is `seen_hi - i`.
    seen_hi: Option<u64>,
    seen: u128,
    /// The arrival time and RTP time transits are measured from.
    epoch: Option<(Instant, u64)>,
    transits: VecDeque<i64>,
    min_transit: i64,
    /// 95th percentile transit above the fastest, samples.
    jitter: u64,
    /// Need raised by late packets, samples; decays.
    boost: u64,
    loss_rate: u32,
    /// Since when the delay has exceeded the need by more than a frame.
    excess_since: Option<Instant>,
    starving: Option<Starve>,
    counters: JitterStats,
    /// Packets skipped since the last [`JitterBuffer::take_skipped`]: the
    /// decoder must still see them (and throw their sound away), or the
    /// packet after a skip decodes from the wrong state into a burst of
    /// noise.
    skipped: Vec<Vec<u8>>,
}

impl Default for JitterBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl JitterBuffer {
    /// 20 ms frames until learned otherwise, a 20-200 ms target.
    pub fn new() -> Self {
        Self::with_targets(Duration::from_millis(20), Duration::from_millis(200))
    }

    /// The target stays within `min..=max`.
    pub fn with_targets(min: Duration, max: Duration) -> Self {
        let min_target = samples(min);
        Self::fresh(min_target, samples(max).max(min_target))
    }

    fn fresh(min_target: u64, max_target: u64) -> Self {
        JitterBuffer {
            min_target,
            max_target,
            packets: BTreeMap::new(),
            mode: Mode::Idle,
            next_ts: 0,
            floor: 0,
            heard_end: 0,
            held: None,
            frame: DEFAULT_FRAME,
            frame_known: false,
            newest: None,
            seen_hi: None,
            seen: 0,
            epoch: None,
            transits: VecDeque::with_capacity(WINDOW),
            min_transit: 0,
            jitter: 0,
            boost: 0,
            loss_rate: 0,
            excess_since: None,
            starving: None,
            counters: JitterStats::default(),
            skipped: Vec::new(),
        }
    }

    /// The packets skipped by the last [`JitterBuffer::pop`], in order:
    /// decode them (and drop the sound) before what it returned.
    pub fn take_skipped(&mut self) -> std::vec::Drain<'_, Vec<u8>> {
        self.skipped.drain(..)
    }

    /// A packet arrived at `now`.
    pub fn push(&mut self, now: Instant, seq: u64, rtp_time: u64, payload: Vec<u8>) {
        self.counters.packets += 1;
        if self.seen_before(seq) || self.packets.contains_key(&rtp_time) {
            self.counters.duplicates += 1;
            return;
        }
        let transit = self.arrival(now, rtp_time);
        self.mark_seen(seq);
        self.learn_frame(seq, rtp_time);
        if rtp_time < self.floor {
            self.counters.late += 1;
            self.boost_for(transit);
            return;
        }
        match self.mode {
            Mode::Idle => {
                self.mode = Mode::Filling { since: now };
                self.next_ts = rtp_time;
            }
            // Nothing is played yet: an earlier packet still leads.
            Mode::Filling { .. } => self.next_ts = self.next_ts.min(rtp_time),
            Mode::Playing => {}
        }
        self.heard_end = self.heard_end.max(rtp_time.saturating_add(1));
        self.insert(rtp_time, payload);
    }

    /// The playback side needs the next slot now.
    pub fn pop(&mut self, now: Instant) -> Playout {
        self.boost = self.boost.saturating_sub(self.frame / BOOST_DECAY_POPS);
        match self.mode {
            Mode::Idle => Playout::Silence,
            Mode::Filling { since } if !self.filled(now, since) => Playout::Silence,
            _ => {
                self.mode = Mode::Playing;
                self.play(now)
            }
        }
    }

    /// Counters and state for telemetry.
    pub fn stats(&self) -> JitterStats {
        JitterStats {
            target_ms: ms(self.target()),
            buffered_ms: ms(self.level()),
            frame_samples: self.frame.min(u32::MAX as u64) as u32,
            ..self.counters
        }
    }

    /// Samples per slot: what a `Conceal` or `Silence` should last.
    pub fn frame_samples(&self) -> u64 {
        self.frame
    }

    /// The talker changed (or stopped): forget everything but the counters.
    pub fn reset(&mut self) {
        let mut counters = self.counters;
        counters.resets += 1;
        *self = Self::fresh(self.min_target, self.max_target);
        self.counters = counters;
    }

    /// Records the packet's transit and returns it. A restarted stream
    /// (transit jump over 1 s) resets first. A spurt whose transit moved by
    /// more than the largest target since the last one only forgets the
    /// timing: the sender's RTP clock stood still while it was not sending
    /// (libwebrtc counts encoded samples), the network did not change.
    fn arrival(&mut self, now: Instant, rtp_time: u64) -> i64 {
        self.epoch.get_or_insert((now, rtp_time));
        let transit = self.offset(now, rtp_time);
        let jump = self
            .transits
            .back()
            .map_or(0, |&last| last.abs_diff(transit));
        if jump > RESTART_JUMP {
            self.reset();
        } else if jump > self.max_target && self.mode == Mode::Idle {
            self.epoch = None;
            self.transits.clear();
            self.boost = 0;
        }
        let transit = match self.epoch {
            Some(_) => transit,
            None => {
                self.epoch = Some((now, rtp_time));
                0
            }
        };
        self.record(transit);
        transit
    }

    /// Arrival (or pop) time minus RTP time, in samples since the epoch.
    fn offset(&self, now: Instant, rtp_time: u64) -> i64 {
        let Some((t0, ts0)) = self.epoch else {
            return 0;
        };
        let elapsed = samples(now.saturating_duration_since(t0)) as i128;
        let t = elapsed - (rtp_time as i128 - ts0 as i128);
        t.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    fn record(&mut self, transit: i64) {
        if self.transits.len() == WINDOW {
            self.transits.pop_front();
        }
        self.transits.push_back(transit);
        let mut sorted: Vec<i64> = self.transits.iter().copied().collect();
        sorted.sort_unstable();
        self.min_transit = sorted[0];
        self.jitter = sorted[(sorted.len() - 1) * 95 / 100].abs_diff(self.min_transit);
    }

    /// A late packet: need at once what would have caught it, unless no
    /// target could have.
    fn boost_for(&mut self, transit: i64) {
        let above = transit.abs_diff(self.min_transit);
        if above <= self.max_target {
            self.boost = self.boost.max(above + above / 4);
        }
    }

    fn seen_before(&self, seq: u64) -> bool {
        match self.seen_hi {
            Some(hi) if seq <= hi => hi - seq < 128 && (self.seen >> (hi - seq)) & 1 == 1,
            _ => false,
        }
    }

    fn mark_seen(&mut self, seq: u64) {
        match self.seen_hi {
            Some(hi) if seq <= hi => {
                if hi - seq < 128 {
                    self.seen |= 1 << (hi - seq);
                }
            }
            Some(hi) if seq - hi < 128 => {
                self.seen = (self.seen << (seq - hi)) | 1;
                self.seen_hi = Some(seq);
            }
            _ => {
                self.seen = 1;
                self.seen_hi = Some(seq);
            }
        }
    }

    /// The frame size is the RTP step between consecutive sequence numbers:
    /// the first step is believed, a change only once two steps agree (a
    /// single odd step is a sender hiccup).
    fn learn_frame(&mut self, seq: u64, rtp_time: u64) {
        match self.newest {
            Some((s, t, prev)) if seq.checked_sub(1) == Some(s) && rtp_time > t => {
                let step = rtp_time - t;
                let valid = step.is_multiple_of(120) && (120..=5760).contains(&step);
                if valid && (step == prev || !self.frame_known) {
                    self.frame = step;
                    self.frame_known = true;
                }
                self.newest = Some((seq, rtp_time, step));
            }
            Some((s, ..)) if seq <= s => {}
            _ => self.newest = Some((seq, rtp_time, 0)),
        }
    }

    /// Full: drop the furthest packet in RTP time, the new one if it is.
    fn insert(&mut self, rtp_time: u64, payload: Vec<u8>) {
        if self.packets.len() >= CAPACITY {
            self.counters.overflow_dropped += 1;
            match self.packets.keys().next_back() {
                Some(&far) if far > rtp_time => self.packets.remove(&far),
                _ => return,
            };
        }
        self.packets.insert(rtp_time, payload);
    }

    /// The delay to keep above the fastest transit, samples.
    fn need(&self) -> u64 {
        let fec = if self.loss_rate > LOSS_FOR_FEC {
            self.frame
        } else {
            0
        };
        let covered = (self.jitter + self.jitter / 4).max(self.boost);
        let lo = self.min_target.saturating_sub(self.frame);
        let hi = self.max_target.saturating_sub(self.frame);
        covered.saturating_add(fec).clamp(lo, hi)
    }

    fn target(&self) -> u64 {
        self.need() + self.frame
    }

    /// How long before the next slot's pop a fastest packet arrived.
    fn delay(&self, now: Instant) -> i64 {
        self.offset(now, self.next_ts)
            .saturating_sub(self.min_transit)
    }

    /// RTP time buffered from the playout point to the newest packet's end.
    fn level(&self) -> u64 {
        let last = self.packets.keys().next_back();
        last.map_or(0, |&t| {
            t.saturating_add(self.frame).saturating_sub(self.next_ts)
        })
    }

    fn filled(&self, now: Instant, since: Instant) -> bool {
        let target = self.target();
        self.level() >= target || samples(now.saturating_duration_since(since)) >= target
    }

    /// One slot of a spurt: the decision table of the module's policy.
    fn play(&mut self, now: Instant) -> Playout {
        let need = self.need() as i64;
        let frame = self.frame as i64;
        self.track_excess(now, need + frame);
        for _ in 0..MAX_FREE_SKIPS {
            let first = self.packets.keys().next().copied();
            if first.is_some() {
                self.end_starving();
            }
            let delay = self.delay(now);
            let slot_end = self.next_ts.saturating_add(self.frame);
            match first {
                Some(ts) if ts < slot_end => {
                    if !self.shrink_due(now, ts) {
                        return self.play_packet(ts);
                    }
                    self.skip(now, ts);
                }
                _ if delay < need && self.held != Some(self.next_ts) => {
                    self.held = Some(self.next_ts);
                    self.counters.inserted += 1;
                    return Playout::Conceal;
                }
                None => return self.starve(now),
                Some(ts) if ts < slot_end.saturating_add(self.frame) => return self.play_fec(ts),
                Some(_) if delay >= need + frame => self.advance(),
                Some(_) => break,
            }
        }
        self.counters.lost += 1;
        self.note_slot(true);
        self.advance();
        Playout::Conceal
    }

    fn play_packet(&mut self, ts: u64) -> Playout {
        let payload = self.packets.remove(&ts).unwrap_or_default();
        self.next_ts = ts.saturating_add(self.frame);
        self.floor = ts.saturating_add(1);
        self.note_slot(false);
        Playout::Packet(payload)
    }

    /// The slot before `next` is recovered from `next`'s FEC; `next` plays
    /// at the following pop.
    fn play_fec(&mut self, next: u64) -> Playout {
        self.counters.fec_recovered += 1;
        self.note_slot(true);
        self.next_ts = next;
        self.floor = next;
        Playout::Fec(self.packets[&next].clone())
    }

    /// Nothing buffered: conceal the slot, or end the spurt after a while.
    fn starve(&mut self, now: Instant) -> Playout {
        let since = self
            .starving
            .get_or_insert(Starve {
                since: now,
                pops: 0,
            })
            .since;
        if now.saturating_duration_since(since) >= IDLE_AFTER {
            self.mode = Mode::Idle;
            self.starving = None;
            self.excess_since = None;
            // Late is only what was heard: the next spurt may start right
            // after it if the sender's clock stood still.
            self.floor = self.heard_end;
            return Playout::Silence;
        }
        if let Some(s) = self.starving.as_mut() {
            s.pops += 1;
        }
        self.advance();
        Playout::Conceal
    }

    /// Audio resumed: the empty pops were an underrun after all.
    fn end_starving(&mut self) {
        if let Some(s) = self.starving.take() {
            self.counters.underruns += 1;
            self.counters.lost += s.pops;
            for _ in 0..s.pops {
                self.note_slot(true);
            }
        }
    }

    /// Consumes the slot without playing a packet.
    fn advance(&mut self) {
        self.next_ts = self.next_ts.saturating_add(self.frame);
        self.floor = self.floor.max(self.next_ts);
    }

    fn track_excess(&mut self, now: Instant, limit: i64) {
        if self.delay(now) > limit {
            self.excess_since.get_or_insert(now);
        } else {
            self.excess_since = None;
        }
    }

    /// Skip `ts` now? Only with the next packet here, so the skip does not
    /// become a gap.
    fn shrink_due(&self, now: Instant, ts: u64) -> bool {
        let Some(since) = self.excess_since else {
            return false;
        };
        let waited = now.saturating_duration_since(since);
        let quiet = self
            .packets
            .get(&ts)
            .is_some_and(|p| p.len() <= QUIET_BYTES);
        let limit = ts.saturating_add(2 * self.frame);
        let next_here = self.packets.range((Excluded(ts), Unbounded)).next();
        // Far over (a stall's backlog): catch up at once, a frame a pop.
        let far_over = self.delay(now) > self.need() as i64 + (CATCH_UP_FRAMES * self.frame) as i64;
        next_here.is_some_and(|(&n, _)| n < limit)
            && (far_over || waited >= SHRINK_AFTER || quiet && waited >= SHRINK_QUIET_AFTER)
    }

    fn skip(&mut self, now: Instant, ts: u64) {
        if let Some(p) = self.packets.remove(&ts) {
            // Bounded for a caller that never takes them.
            if self.skipped.len() >= CAPACITY {
                self.skipped.remove(0);
            }
            self.skipped.push(p);
        }
        self.counters.skipped += 1;
        self.next_ts = ts.saturating_add(self.frame);
        self.floor = ts.saturating_add(1);
        self.excess_since = Some(now);
    }

    /// The share of slots whose packet was missing, decaying.
    fn note_slot(&mut self, lost: bool) {
        self.loss_rate -= self.loss_rate / LOSS_MEMORY;
        if lost {
            self.loss_rate += LOSS_ONE / LOSS_MEMORY;
        }
    }
}

fn samples(d: Duration) -> u64 {
    (d.as_micros() * RATE as u128 / 1_000_000).min(u64::MAX as u128) as u64
}

fn ms(samples: u64) -> u32 {
    (samples / (RATE / 1000)).min(u32::MAX as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A tiny deterministic RNG: the same seed gives the same network.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> u64 {
            if n == 0 { 0 } else { self.next() % n }
        }

        fn percent(&mut self, p: u64) -> bool {
            self.below(100) < p
        }
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
                if rng.percent(link.loss_pct) {
                    run.lost_on_link.push(i);
                } else {
                    let mut delay = link.base_ms + rng.below((link.jitter_ms)(now) + 1);
                    if i.is_multiple_of(2) && rng.percent(link.swap_pct) {
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
                1 => (rng.next(), rng.next()),
                _ => (u64::MAX - rng.below(100), u64::MAX - rng.below(RATE)),
            };
            jb.push(now, seq, ts, vec![0; rng.below(200) as usize]);
            max_len = max_len.max(jb.packets.len());
            assert!(jb.packets.len() <= CAPACITY);
            // The first 500 of each 2000 come in one burst, unplayed.
            if n % 2_000 >= 500 && rng.percent(30) {
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
}
