//! Pictures in the chat, sans-IO: a viewer sends one (a snapshot, or a
//! small image file) in base64 chunks on its `rtcam` channel; once whole and
//! checked to be a JPEG, PNG, GIF or WebP by its first bytes, the device
//! keeps it (the newest few, within a memory budget) and the chat line that
//! carries it gives every viewer its URL, `/api/chat/images/N`, fetched over
//! HTTPS. The device does not push megabytes into every viewer's SCTP
//! buffer, where they would hold up chat and telemetry.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use base64::Engine;
use serde::Serialize;

/// The largest picture, in bytes.
pub const MAX_IMAGE_BYTES: usize = 2 * 1024 * 1024;
/// The most raw bytes one chunk message carries (its base64 fits the
/// channel's 16 KiB message limit).
pub const MAX_CHUNK_BYTES: usize = 8 * 1024;
/// Pictures kept for viewers to fetch, by total size; the oldest go first.
pub const KEPT_BYTES: usize = 8 * 1024 * 1024;
/// Uploads under way at once, device-wide (each holds up to 2 MiB).
pub const UPLOADS_AT_ONCE: usize = 2;
/// An upload's first seconds are free of the pace below: the channel's
/// congestion window opens (SCTP's slow start, a few round trips) and the
/// first chunk crosses the link.
pub const UPLOAD_GRACE: Duration = Duration::from_secs(3);
/// The pace every upload keeps after its grace, averaged from its start,
/// in picture bytes a second. A phone on a 1 Mbit/s uplink delivers about
/// 86 KiB/s of picture (125 kB/s, less base64's third and about 6 % of
/// SCTP, DTLS, UDP and IP headers): five times this, so it keeps the pace
/// with most of its uplink taken by something else, and sends the largest
/// picture in about 25 s. A slot held longer than the grace costs its
/// holder this much real upload; a trickle is cancelled at once.
pub const MIN_RATE: usize = 16 * 1024;
/// An upload that gets no chunk for this long is cancelled, whatever it
/// sent before: longer than SCTP's retransmission backoff on a lossy link
/// (1 + 2 + 4 s), and the session itself ends after 10 s of silence.
pub const UPLOAD_IDLE: Duration = Duration::from_secs(10);
/// An upload not whole this long after it began is cancelled, whatever its
/// size: the largest must average 17.5 KiB/s (the phone above needs 25 s).
pub const UPLOAD_LIMIT: Duration = Duration::from_secs(120);
/// Pictures kept at most, whatever their size.
pub const KEPT_PICTURES: usize = 32;
/// What the smallest picture counts against [`KEPT_BYTES`] (its keeping
/// costs more than its bytes).
const MIN_CHARGE: usize = 4 * 1024;

/// Why a picture was refused, or cancelled on its way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRefusal {
    TooLarge {
        bytes: usize,
    },
    /// Another upload of this viewer's is under way.
    Busy,
    /// Another viewer at the same address is sending one.
    AddressBusy,
    /// The device's few upload slots are taken.
    DeviceBusy,
    /// It fell behind the pace every upload keeps: cancelled, and its
    /// address may start another only after `wait` (zero when unknown).
    TooSlow {
        lag: Lag,
        wait: Duration,
    },
    /// Its address had an upload cancelled for coming too slowly, and may
    /// start another after `wait`.
    CoolingDown {
        wait: Duration,
    },
    /// A chunk with bad base64, empty, or past the announced size.
    BadChunk(&'static str),
    NotAnImage,
}

impl ImageRefusal {
    pub fn reason(&self) -> &'static str {
        match self {
            ImageRefusal::TooLarge { .. } => "image_too_large",
            ImageRefusal::Busy | ImageRefusal::AddressBusy | ImageRefusal::DeviceBusy => {
                "upload_busy"
            }
            ImageRefusal::TooSlow { .. } => "upload_too_slow",
            ImageRefusal::CoolingDown { .. } => "upload_cooldown",
            ImageRefusal::BadChunk(_) => "bad_chunk",
            ImageRefusal::NotAnImage => "not_an_image",
        }
    }
}

impl std::fmt::Display for ImageRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageRefusal::TooLarge { bytes } => {
                write!(f, "a picture of {bytes} bytes; at most {MAX_IMAGE_BYTES}")
            }
            ImageRefusal::Busy => {
                f.write_str("another picture is on its way; send this one when it is done")
            }
            ImageRefusal::AddressBusy => f.write_str(
                "another viewer at this address is sending a picture; one at a time per address",
            ),
            ImageRefusal::DeviceBusy => write!(
                f,
                "the device is taking {UPLOADS_AT_ONCE} other pictures; try again in a moment"
            ),
            ImageRefusal::TooSlow { lag, wait } => {
                write!(f, "{lag}: the picture was cancelled")?;
                if !wait.is_zero() {
                    write!(
                        f,
                        "; this address may send another in {} s",
                        whole_secs(*wait)
                    )?;
                }
                Ok(())
            }
            ImageRefusal::CoolingDown { wait } => write!(
                f,
                "a picture from this address came too slowly; it may send another in {} s",
                whole_secs(*wait)
            ),
            ImageRefusal::BadChunk(why) => write!(f, "picture chunk refused: {why}"),
            ImageRefusal::NotAnImage => f.write_str("not a JPEG, PNG, GIF or WebP picture"),
        }
    }
}

/// How an upload fell behind its pace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lag {
    /// Fewer bytes than the pace owes by now.
    Behind {
        received: usize,
        size: usize,
        took: Duration,
    },
    /// No chunk for this long.
    Stalled { idle: Duration },
}

impl std::fmt::Display for Lag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lag::Behind {
                received,
                size,
                took,
            } => write!(
                f,
                "{received} of {size} bytes in {:.1} s; a picture must come at {} KiB/s \
                 after its first {} s, and whole within {} s",
                took.as_secs_f64(),
                MIN_RATE / 1024,
                UPLOAD_GRACE.as_secs(),
                UPLOAD_LIMIT.as_secs()
            ),
            Lag::Stalled { idle } => write!(f, "no part of the picture for {} s", idle.as_secs()),
        }
    }
}

/// A wait in whole seconds, rounded up: a client that waits as told finds
/// the door open.
fn whole_secs(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

/// A picture being received.
#[derive(Debug)]
pub struct Upload {
    pub id: u32,
    pub name: String,
    pub size: usize,
    pub data: Vec<u8>,
    pub last: Instant,
    pub began: Instant,
}

impl Upload {
    pub fn start(now: Instant, id: u32, name: &str, size: usize) -> Result<Upload, ImageRefusal> {
        if size == 0 || size > MAX_IMAGE_BYTES {
            return Err(ImageRefusal::TooLarge { bytes: size });
        }
        Ok(Upload {
            id,
            name: clean_file_name(name),
            size,
            data: Vec::new(),
            last: now,
            began: now,
        })
    }

    /// Adds one chunk; `Some(mime)` once the picture is whole and checked.
    pub fn add(&mut self, now: Instant, b64: &str) -> Result<Option<&'static str>, ImageRefusal> {
        if b64.len() > MAX_CHUNK_BYTES.div_ceil(3) * 4 {
            return Err(ImageRefusal::BadChunk("over 8 KiB"));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| ImageRefusal::BadChunk("not base64"))?;
        if bytes.is_empty() {
            return Err(ImageRefusal::BadChunk("empty"));
        }
        if self.data.len() + bytes.len() > self.size {
            return Err(ImageRefusal::BadChunk("more bytes than announced"));
        }
        if self.data.is_empty() {
            self.data.reserve_exact(self.size);
        }
        self.data.extend_from_slice(&bytes);
        self.last = now;
        if self.data.len() < self.size {
            return Ok(None);
        }
        sniff(&self.data).map(Some).ok_or(ImageRefusal::NotAnImage)
    }

    /// How it fell behind its pace by `now`, if it did: no chunk for
    /// [`UPLOAD_IDLE`], or fewer bytes than [`pace`] owes since
    /// [`UPLOAD_GRACE`] (all of them by [`UPLOAD_LIMIT`]).
    pub fn lag(&self, now: Instant) -> Option<Lag> {
        let idle = now.saturating_duration_since(self.last);
        if idle >= UPLOAD_IDLE {
            return Some(Lag::Stalled { idle });
        }
        let took = now.saturating_duration_since(self.began);
        let received = self.data.len();
        (received < owed(self.size, took)).then_some(Lag::Behind {
            received,
            size: self.size,
            took,
        })
    }
}

/// The pace an upload of `size` bytes keeps, bytes a second: [`MIN_RATE`],
/// or what makes it whole by [`UPLOAD_LIMIT`] if that is faster.
pub fn pace(size: usize) -> f64 {
    let window = UPLOAD_LIMIT.saturating_sub(UPLOAD_GRACE).as_secs_f64();
    (MIN_RATE as f64).max(size as f64 / window)
}

/// The longest an upload of `size` bytes can hold its slot, whatever it
/// sends: its grace, then its size at [`pace`] (at most [`UPLOAD_LIMIT`]).
pub fn longest(size: usize) -> Duration {
    UPLOAD_GRACE + Duration::from_secs_f64(size as f64 / pace(size))
}

/// The bytes an upload of `size` must have `took` after it began.
fn owed(size: usize, took: Duration) -> usize {
    if took >= UPLOAD_LIMIT {
        return size;
    }
    let paced = took.saturating_sub(UPLOAD_GRACE).as_secs_f64() * pace(size);
    (paced as usize).min(size)
}

/// What a chat line says of its picture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRef {
    pub url: String,
    pub name: String,
    pub mime: &'static str,
    pub size: usize,
}

#[derive(Debug, Clone)]
pub struct Image {
    pub mime: &'static str,
    pub bytes: bytes::Bytes,
}

/// The pictures viewers can fetch.
#[derive(Debug, Default)]
pub struct Kept {
    images: VecDeque<(u64, Image)>,
    bytes: usize,
    next: u64,
}

impl Kept {
    /// Keeps `data`, dropping the oldest past the budget; its reference.
    pub fn keep(&mut self, name: String, mime: &'static str, data: Vec<u8>) -> ImageRef {
        let size = data.len();
        let charge = |n: usize| n.max(MIN_CHARGE);
        while self.bytes + charge(size) > KEPT_BYTES || self.images.len() >= KEPT_PICTURES {
            let Some((_, old)) = self.images.pop_front() else {
                break;
            };
            self.bytes -= charge(old.bytes.len());
        }
        self.next += 1;
        self.bytes += charge(size);
        self.images.push_back((
            self.next,
            Image {
                mime,
                bytes: data.into(),
            },
        ));
        ImageRef {
            url: format!("/api/chat/images/{}", self.next),
            name,
            mime,
            size,
        }
    }

    pub fn get(&self, id: u64) -> Option<Image> {
        // Ids only grow: the queue is sorted.
        let at = self.images.binary_search_by_key(&id, |(i, _)| *i).ok()?;
        Some(self.images[at].1.clone())
    }
}

/// The picture's type from its first bytes, if it is one the page shows.
pub fn sniff(data: &[u8]) -> Option<&'static str> {
    match data {
        [0xff, 0xd8, 0xff, ..] => Some("image/jpeg"),
        [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, ..] => Some("image/png"),
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some("image/gif"),
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => Some("image/webp"),
        _ => None,
    }
}

/// The name as the chat shows it (text, never a path on the device):
/// without control characters, at most 100 characters.
fn clean_file_name(name: &str) -> String {
    let name: String = name.chars().filter(|c| !c.is_control()).take(100).collect();
    let name = name.trim();
    if name.is_empty() {
        "picture".into()
    } else {
        name.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    #[test]
    fn a_picture_arrives_in_chunks_and_is_checked() {
        let t0 = Instant::now();
        let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0];
        jpeg.resize(20_000, 7);
        let mut up = Upload::start(t0, 1, "snap\n<b>1</b>.jpg", jpeg.len()).unwrap();
        assert_eq!(up.name, "snap<b>1</b>.jpg", "text stays text");
        let mut done = None;
        for part in jpeg.chunks(MAX_CHUNK_BYTES) {
            done = up.add(t0, &b64(part)).unwrap();
        }
        assert_eq!(done, Some("image/jpeg"));
        let mut up = Upload::start(t0, 2, "x", 4).unwrap();
        assert_eq!(up.add(t0, &b64(b"<svg")), Err(ImageRefusal::NotAnImage));
        let mut up = Upload::start(t0, 3, "x", 4).unwrap();
        assert!(up.add(t0, &b64(b"12345")).is_err(), "past its size");
        assert!(up.add(t0, "***").is_err(), "not base64");
        assert!(Upload::start(t0, 4, "x", MAX_IMAGE_BYTES + 1).is_err());
        let mut up = Upload::start(t0, 5, "x", 100_000).unwrap();
        assert!(up.add(t0, "").is_err(), "an empty chunk");
    }

    #[test]
    fn a_trickle_falls_behind_after_the_grace_and_a_stall_too() {
        let t0 = Instant::now();
        let mut up = Upload::start(t0, 1, "x", MAX_IMAGE_BYTES).unwrap();
        up.add(t0, &b64(b"a")).unwrap();
        assert_eq!(up.lag(t0 + UPLOAD_GRACE), None, "its grace");
        let late = t0 + UPLOAD_GRACE + Duration::from_millis(100);
        assert!(
            matches!(up.lag(late), Some(Lag::Behind { received: 1, .. })),
            "{:?}",
            up.lag(late)
        );
        // Half the picture at once buys time, but not a stall.
        let mut up = Upload::start(t0, 2, "x", MAX_IMAGE_BYTES).unwrap();
        for _ in 0..128 {
            up.add(t0, &b64(&[7; MAX_CHUNK_BYTES])).unwrap();
        }
        assert_eq!(up.lag(t0 + UPLOAD_IDLE - Duration::from_millis(1)), None);
        assert_eq!(
            up.lag(t0 + UPLOAD_IDLE),
            Some(Lag::Stalled { idle: UPLOAD_IDLE })
        );
        // Whatever it sends, an upload is whole by its longest, at most
        // the limit.
        let mut up = Upload::start(t0, 3, "x", 3 * MAX_CHUNK_BYTES).unwrap();
        for s in 1..=4u64 {
            let t = t0 + Duration::from_secs(s);
            up.add(t, &b64(&[7; 4096])).unwrap();
            assert_eq!(up.lag(t), None, "{s}");
        }
        let end = t0 + longest(up.size);
        assert_eq!(end, t0 + UPLOAD_GRACE + Duration::from_millis(1500));
        assert!(up.lag(end).is_some());
        assert!((pace(100_000) - MIN_RATE as f64).abs() < 1e-9);
        let largest = longest(MAX_IMAGE_BYTES).as_secs_f64();
        assert!(
            (largest - UPLOAD_LIMIT.as_secs_f64()).abs() < 0.001,
            "{largest}"
        );
    }

    #[test]
    fn a_phone_on_a_1_mbit_uplink_keeps_the_pace_with_the_largest_picture() {
        // 1 Mbit/s is 125 kB/s: an 8 KiB chunk is 10.9 KB of base64 in its
        // JSON, about 11.6 KB with SCTP, DTLS, UDP and IP headers, so one
        // every 93 ms. The first comes after a second (slow start), and the
        // link stalls for 5 s halfway.
        let t0 = Instant::now();
        let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0];
        jpeg.resize(MAX_IMAGE_BYTES, 7);
        let mut up = Upload::start(t0, 1, "big.jpg", jpeg.len()).unwrap();
        let mut t = t0 + Duration::from_secs(1);
        let mut done = None;
        for (i, part) in jpeg.chunks(MAX_CHUNK_BYTES).enumerate() {
            if i == 128 {
                t += Duration::from_secs(5);
            }
            assert_eq!(up.lag(t), None, "chunk {i}");
            done = up.add(t, &b64(part)).unwrap();
            t += Duration::from_millis(93);
        }
        assert_eq!(done, Some("image/jpeg"));
        assert!(t - t0 < Duration::from_secs(31), "{:?}", t - t0);
    }

    #[test]
    fn kept_pictures_stay_within_the_budget() {
        let mut kept = Kept::default();
        let first = kept.keep("a".into(), "image/png", vec![0; MAX_IMAGE_BYTES]);
        assert_eq!(first.url, "/api/chat/images/1");
        for _ in 0..4 {
            kept.keep("b".into(), "image/png", vec![0; MAX_IMAGE_BYTES]);
        }
        assert!(kept.get(1).is_none(), "the oldest went");
        assert!(kept.get(5).is_some());
        assert!(kept.bytes <= KEPT_BYTES);
        for _ in 0..1000 {
            kept.keep("tiny".into(), "image/jpeg", vec![0xff, 0xd8, 0xff]);
        }
        assert_eq!(kept.images.len(), KEPT_PICTURES, "a count cap too");
        assert!(kept.get(1005).is_some() && kept.get(5).is_none());
    }
}
