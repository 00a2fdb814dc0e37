//! The talker's jitter buffer, sans-IO: Opus packets in as they arrive,
//! one slot of playout out whenever the speaker asks.
//!
//! No clocks, threads or IO in here: every call takes the time it happens
//! at, so the policy is tested on simulated time (`tests.rs` drives it
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

mod seen;

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound::{Excluded, Unbounded};
use std::time::{Duration, Instant};

use seen::SeqWindow;

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
    /// Sequence numbers seen lately, to drop duplicates.
    seen: SeqWindow,
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
            seen: SeqWindow::default(),
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
        if self.seen.contains(seq) || self.packets.contains_key(&rtp_time) {
            self.counters.duplicates += 1;
            return;
        }
        let transit = self.arrival(now, rtp_time);
        self.seen.insert(seq);
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
mod tests;
