//! Who may send a picture now, sans-IO: the device's few upload slots, one
//! upload at a time per viewer and per address, and a wait for an address
//! whose upload was cancelled for coming too slowly.
//!
//! Every upload keeps a pace (`images.rs`, [`Upload::lag`]); one that falls
//! behind is cancelled at once, its viewer told why and its slot freed. So a
//! trickle holds a slot for its grace at most, a slot held longer costs its
//! holder real upload, and it cannot take the slot again at once: its
//! address waits [`COOLDOWN`] first, twice as long each time it does it
//! again. Two viewers from one address (a household, one IPv6 /64) cannot
//! hold both slots either: one upload per address.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use super::images::{ImageRefusal, UPLOADS_AT_ONCE, Upload};
use super::refusal::Refusal;
use super::{ChatLine, Control};
use crate::log_limit::{Throttle, more};

/// An address whose upload was cancelled for coming too slowly waits this
/// long before it may start another; twice as long each time after.
pub const COOLDOWN: Duration = Duration::from_secs(30);
/// The longest wait (30 s doubled four times).
pub const MAX_COOLDOWN: Duration = Duration::from_secs(8 * 60);
/// An address with no upload cancelled for this long after its wait ended
/// starts again from [`COOLDOWN`]; it is forgotten then. Each entry takes
/// a cancellation, which takes a slot held for a grace, so there are a few
/// hundred at most.
const FORGET: Duration = Duration::from_secs(10 * 60);
/// Cancellations are logged at most this often (a client causes them).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// An upload in progress, and the address it counts against.
#[derive(Debug)]
struct Slot {
    from: Option<IpAddr>,
    upload: Upload,
}

/// An address's wait, and the next one's length.
#[derive(Debug, Clone, Copy)]
struct Cooldown {
    until: Instant,
    next: Duration,
}

/// The uploads in progress, by viewer; viewers' addresses; addresses that
/// wait; cancellations to tell.
#[derive(Debug)]
pub struct Uploads<Id> {
    slots: BTreeMap<Id, Slot>,
    addresses: BTreeMap<Id, IpAddr>,
    cooldowns: HashMap<IpAddr, Cooldown>,
    to_tell: VecDeque<(Id, ImageRefusal)>,
    cancels: u64,
    log: Throttle,
}

impl<Id> Default for Uploads<Id> {
    fn default() -> Self {
        Uploads {
            slots: BTreeMap::new(),
            addresses: BTreeMap::new(),
            cooldowns: HashMap::new(),
            to_tell: VecDeque::new(),
            cancels: 0,
            log: Throttle::new(LOG_EVERY),
        }
    }
}

impl<Id: Ord + Copy + fmt::Display> Uploads<Id> {
    /// Viewer `id` signaled from `from`. A viewer with no address known
    /// is held to the per-viewer and device-wide rules only.
    pub fn address(&mut self, id: Id, from: IpAddr) {
        self.addresses.insert(id, household(from));
    }

    /// The viewer left: its upload, if any, is dropped.
    pub fn leave(&mut self, id: Id) {
        self.slots.remove(&id);
        self.addresses.remove(&id);
    }

    /// Uploads cancelled for coming too slowly, since the start.
    pub fn cancelled(&self) -> u64 {
        self.cancels
    }

    /// The next viewer whose upload was cancelled, and why.
    pub fn poll_cancelled(&mut self) -> Option<(Id, ImageRefusal)> {
        self.to_tell.pop_front()
    }

    /// Viewer `id` announces picture `upload` of `size` bytes at `now`.
    pub fn begin(
        &mut self,
        now: Instant,
        id: Id,
        upload: u32,
        name: &str,
        size: usize,
    ) -> Result<(), ImageRefusal> {
        self.sweep(now);
        let from = self.addresses.get(&id).copied();
        self.admit(now, id, from)?;
        let upload = Upload::start(now, upload, name, size)?;
        self.slots.insert(id, Slot { from, upload });
        Ok(())
    }

    /// A chunk of `id`'s picture `upload`: the picture and its type once
    /// whole. A chunk for no upload of its own (one cancelled, say) is let
    /// go quietly; a bad one ends the upload.
    pub fn chunk(
        &mut self,
        now: Instant,
        id: Id,
        upload: u32,
        b64: &str,
    ) -> Result<Option<(Upload, &'static str)>, ImageRefusal> {
        self.sweep(now);
        let Some(slot) = self.slots.get_mut(&id).filter(|s| s.upload.id == upload) else {
            return Ok(None);
        };
        match slot.upload.add(now, b64) {
            Ok(None) => Ok(None),
            Ok(Some(mime)) => {
                let slot = self.slots.remove(&id).expect("it was there");
                Ok(Some((slot.upload, mime)))
            }
            Err(refusal) => {
                self.slots.remove(&id);
                Err(refusal)
            }
        }
    }

    /// Time passes: uploads that fell behind are cancelled, and addresses
    /// long done waiting are forgotten.
    pub fn tick(&mut self, now: Instant) {
        self.sweep(now);
        self.cooldowns.retain(|_, c| now < c.until + FORGET);
    }

    /// Whether `id` may start an upload now (from `from`).
    fn admit(&self, now: Instant, id: Id, from: Option<IpAddr>) -> Result<(), ImageRefusal> {
        if self.slots.contains_key(&id) {
            return Err(ImageRefusal::Busy);
        }
        if let Some(c) = from.and_then(|a| self.cooldowns.get(&a))
            && c.until > now
        {
            let wait = c.until - now;
            return Err(ImageRefusal::CoolingDown { wait });
        }
        if from.is_some() && self.slots.values().any(|s| s.from == from) {
            return Err(ImageRefusal::AddressBusy);
        }
        if self.slots.len() >= UPLOADS_AT_ONCE {
            return Err(ImageRefusal::DeviceBusy);
        }
        Ok(())
    }

    /// Cancels every upload that fell behind its pace by `now`.
    fn sweep(&mut self, now: Instant) {
        let late: Vec<(Id, _)> = self
            .slots
            .iter()
            .filter_map(|(id, s)| s.upload.lag(now).map(|lag| (*id, lag)))
            .collect();
        for (id, lag) in late {
            let Some(slot) = self.slots.remove(&id) else {
                continue;
            };
            let wait = slot.from.map_or(Duration::ZERO, |a| self.cool(now, a));
            let why = ImageRefusal::TooSlow { lag, wait };
            self.cancels += 1;
            if let Some(held) = self.log.allow(now) {
                let from = slot.from.map_or_else(|| "?".to_string(), |a| a.to_string());
                tracing::info!(
                    viewer = %id,
                    "picture upload from {from} cancelled: {why}{}",
                    more(held)
                );
            }
            self.to_tell.push_back((id, why));
        }
    }

    /// Starts `from`'s wait at `now`; its length.
    fn cool(&mut self, now: Instant, from: IpAddr) -> Duration {
        let c = self.cooldowns.entry(from).or_insert(Cooldown {
            until: now,
            next: COOLDOWN,
        });
        if now >= c.until + FORGET {
            c.next = COOLDOWN;
        }
        let wait = c.next;
        c.until = now + wait;
        c.next = (wait * 2).min(MAX_COOLDOWN);
        wait
    }
}

/// What counts as one address: an IPv4 address, or an IPv6 /64 (a host
/// picks any address in its prefix at no cost).
fn household(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else {
        return ip;
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
}

impl<Id: Ord + Copy + fmt::Display> Control<Id> {
    /// The address viewer `id` signaled from: its uploads count against it.
    pub fn address(&mut self, id: Id, from: IpAddr) {
        self.uploads.address(id, from);
    }

    /// Picture uploads cancelled for coming too slowly, since the start.
    pub fn uploads_cancelled(&self) -> u64 {
        self.uploads.cancelled()
    }

    /// A picture begins, if the viewer, its address and the device have
    /// room for it.
    pub(super) fn begin_image(
        &mut self,
        now: Instant,
        id: Id,
        upload: u32,
        name: &str,
        size: usize,
    ) -> Result<(), Refusal> {
        let begun = self.uploads.begin(now, id, upload, name, size);
        self.tell_cancelled();
        begun.map_err(Refusal::Image)
    }

    /// One chunk of viewer `id`'s picture; once whole, it is kept and its
    /// line goes to everyone.
    pub(super) fn image_chunk(
        &mut self,
        now: Instant,
        wall_ms: u64,
        id: Id,
        upload: u32,
        data: &str,
    ) -> Result<(), Refusal> {
        let added = self.uploads.chunk(now, id, upload, data);
        self.tell_cancelled();
        let Some((up, mime)) = added.map_err(Refusal::Image)? else {
            return Ok(());
        };
        let Some(from) = self.members.get(&id).map(|m| m.name.clone()) else {
            return Ok(());
        };
        let image = self.kept.keep(up.name.clone(), mime, up.data);
        self.say(ChatLine {
            from,
            text: up.name,
            at: wall_ms,
            image: Some(image),
        });
        Ok(())
    }

    /// Uploads that fell behind are cancelled, their viewers told.
    pub(super) fn tick_uploads(&mut self, now: Instant) {
        self.uploads.tick(now);
        self.tell_cancelled();
    }

    fn tell_cancelled(&mut self) {
        while let Some((to, why)) = self.uploads.poll_cancelled() {
            if self.members.contains_key(&to) {
                self.refuse(to, &Refusal::Image(why));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;
    use crate::control::images::{
        Lag, MAX_CHUNK_BYTES, MAX_IMAGE_BYTES, UPLOAD_GRACE, UPLOAD_LIMIT, longest,
    };

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn b64(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    fn told(u: &mut Uploads<u32>) -> Vec<(u32, ImageRefusal)> {
        std::iter::from_fn(|| u.poll_cancelled()).collect()
    }

    #[test]
    fn a_trickle_is_cancelled_within_its_bound_and_its_slot_goes_to_an_honest_upload() {
        let t0 = Instant::now();
        let mut u: Uploads<u32> = Uploads::default();
        for id in 1..=3 {
            u.address(id, ip(id as u8));
        }
        u.begin(t0, 1, 1, "a", MAX_IMAGE_BYTES).unwrap();
        u.begin(t0, 2, 1, "b", MAX_IMAGE_BYTES).unwrap();
        assert_eq!(u.begin(t0, 3, 1, "c", 100), Err(ImageRefusal::DeviceBusy));
        // A byte each every 2 s (today's rules let that hold a slot for
        // 120 s); time ticks every 100 ms.
        let mut t = t0;
        let mut cancelled = Vec::new();
        while cancelled.len() < 2 {
            t += Duration::from_millis(100);
            let bound = UPLOAD_GRACE + Duration::from_millis(100);
            assert!(t - t0 <= bound, "not cancelled within {bound:?}");
            if (t - t0).as_millis().is_multiple_of(2000) {
                for id in [1, 2] {
                    assert!(matches!(u.chunk(t, id, 1, &b64(b"x")), Ok(None)));
                }
            }
            u.tick(t);
            cancelled.extend(told(&mut u));
        }
        for (id, why) in &cancelled {
            assert!(
                matches!(why, ImageRefusal::TooSlow { lag: Lag::Behind { received: 1, .. }, wait }
                    if *wait == COOLDOWN),
                "{id}: {why:?}"
            );
            assert_eq!(why.reason(), "upload_too_slow");
        }
        assert_eq!(u.cancelled(), 2);
        // Their late chunks are let go quietly, and they cannot start again
        // at once.
        assert!(matches!(u.chunk(t, 1, 1, &b64(b"x")), Ok(None)));
        assert!(matches!(
            u.begin(t, 1, 2, "a", MAX_IMAGE_BYTES),
            Err(ImageRefusal::CoolingDown { .. })
        ));
        // The honest viewer's picture goes through.
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.resize(100_000, 1);
        u.begin(t, 3, 7, "door.png", png.len()).unwrap();
        let mut done = None;
        for part in png.chunks(MAX_CHUNK_BYTES) {
            t += Duration::from_millis(10);
            done = u.chunk(t, 3, 7, &b64(part)).unwrap();
        }
        let (up, mime) = done.expect("the whole picture");
        assert_eq!((up.data.len(), mime), (100_000, "image/png"));
        assert!(told(&mut u).is_empty());
        assert!(longest(MAX_IMAGE_BYTES) <= UPLOAD_LIMIT + Duration::from_millis(1));
    }

    #[test]
    fn two_viewers_from_one_address_cannot_hold_both_slots() {
        let t0 = Instant::now();
        let mut u: Uploads<u32> = Uploads::default();
        u.address(1, ip(9));
        u.address(2, ip(9));
        u.address(3, ip(10));
        u.begin(t0, 1, 1, "a", 1000).unwrap();
        assert_eq!(u.begin(t0, 1, 2, "a", 1000), Err(ImageRefusal::Busy));
        assert_eq!(u.begin(t0, 2, 1, "b", 1000), Err(ImageRefusal::AddressBusy));
        assert_eq!(ImageRefusal::AddressBusy.reason(), "upload_busy");
        u.begin(t0, 3, 1, "c", 1000).unwrap();
        // An IPv4-mapped IPv6 address is the same address.
        u.address(4, "::ffff:10.0.0.9".parse().unwrap());
        u.leave(3);
        assert_eq!(u.begin(t0, 4, 1, "d", 1000), Err(ImageRefusal::AddressBusy));
        // One IPv6 /64 is one address; a viewer that leaves frees its slot.
        let mut u: Uploads<u32> = Uploads::default();
        u.address(1, "2001:db8:1:2::10".parse().unwrap());
        u.address(2, "2001:db8:1:2:ffff::99".parse().unwrap());
        u.address(3, "2001:db8:1:3::10".parse().unwrap());
        u.begin(t0, 1, 1, "a", 1000).unwrap();
        assert_eq!(u.begin(t0, 2, 1, "b", 1000), Err(ImageRefusal::AddressBusy));
        u.begin(t0, 3, 1, "c", 1000).unwrap();
        u.leave(1);
        u.begin(t0, 2, 1, "b", 1000).unwrap();
    }

    #[test]
    fn an_address_too_slow_waits_twice_as_long_each_time_then_is_forgotten() {
        let t0 = Instant::now();
        let mut u: Uploads<u32> = Uploads::default();
        u.address(1, ip(5));
        u.address(2, ip(5));
        let mut t = t0;
        for secs in [30, 60, 120, 240, 480, 480] {
            let wait = Duration::from_secs(secs);
            u.begin(t, 1, 1, "a", 1000).unwrap();
            t += UPLOAD_GRACE + Duration::from_millis(1); // nothing came
            u.tick(t);
            let out = told(&mut u);
            assert!(
                matches!(out[..], [(1, ImageRefusal::TooSlow { wait: w, .. })] if w == wait),
                "{secs}: {out:?}"
            );
            // Neither it nor another viewer at its address, until the wait
            // is over.
            for id in [1, 2] {
                let refused = u.begin(t, id, 2, "a", 1000);
                assert_eq!(refused, Err(ImageRefusal::CoolingDown { wait }));
            }
            t += wait - Duration::from_millis(1);
            let refused = u.begin(t, 2, 2, "b", 1000);
            assert!(matches!(refused, Err(ImageRefusal::CoolingDown { .. })));
            t += Duration::from_millis(1);
        }
        assert_eq!(u.cancelled(), 6);
        // Another address never waited.
        u.address(3, ip(6));
        u.begin(t, 3, 1, "c", 1000).unwrap();
        u.leave(3);
        // Long after its last wait, it starts from 30 s again.
        t += FORGET;
        u.tick(t);
        assert!(u.cooldowns.is_empty(), "forgotten");
        u.begin(t, 1, 1, "a", 1000).unwrap();
        t += UPLOAD_GRACE + Duration::from_millis(1);
        u.tick(t);
        let out = told(&mut u);
        assert!(
            matches!(out[..], [(1, ImageRefusal::TooSlow { wait, .. })] if wait == COOLDOWN),
            "{out:?}"
        );
    }

    #[test]
    fn the_protocol_tells_a_cancelled_viewer_why_and_when_it_may_send_again() {
        let t0 = Instant::now();
        let mut c: Control<u32> = Control::new();
        c.join(t0, 1, Some("watcher"), false);
        c.address(1, ip(1));
        let start = br#"{"type":"image","id":1,"name":"a.png","size":5000}"#;
        c.handle(t0, 0, 1, start, false);
        let _: Vec<_> = std::iter::from_fn(|| c.poll_output()).collect();
        c.tick(t0 + UPLOAD_GRACE + Duration::from_millis(1));
        let reasons = |c: &mut Control<u32>| -> Vec<(String, String)> {
            std::iter::from_fn(|| c.poll_output())
                .map(|s| serde_json::from_str::<serde_json::Value>(&s.text).unwrap())
                .map(|m| (m["reason"].to_string(), m["message"].to_string()))
                .collect()
        };
        let out = reasons(&mut c);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].0, r#""upload_too_slow""#);
        assert!(out[0].1.contains("in 30 s"), "{}", out[0].1);
        assert_eq!(c.uploads_cancelled(), 1);
        let again = br#"{"type":"image","id":2,"name":"a.png","size":5000}"#;
        c.handle(t0 + Duration::from_secs(5), 0, 1, again, false);
        let out = reasons(&mut c);
        assert_eq!(out[0].0, r#""upload_cooldown""#);
        assert!(out[0].1.contains("in 29 s"), "{}", out[0].1);
    }
}
