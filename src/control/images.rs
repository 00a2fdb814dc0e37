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
/// An upload that gets no chunk for this long is dropped.
pub const UPLOAD_IDLE: Duration = Duration::from_secs(30);
/// An upload not whole this long after it began is dropped (a trickle of
/// chunks cannot hold one of the few slots forever).
pub const UPLOAD_LIMIT: Duration = Duration::from_secs(120);
/// Pictures kept at most, whatever their size.
pub const KEPT_PICTURES: usize = 32;
/// What the smallest picture counts against [`KEPT_BYTES`] (its keeping
/// costs more than its bytes).
const MIN_CHARGE: usize = 4 * 1024;

/// Why a picture was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRefusal {
    TooLarge {
        bytes: usize,
    },
    /// Another upload of this viewer's is under way, or the device's few
    /// upload slots are taken.
    Busy,
    /// A chunk with bad base64, empty, or past the announced size.
    BadChunk(&'static str),
    NotAnImage,
}

impl ImageRefusal {
    pub fn reason(&self) -> &'static str {
        match self {
            ImageRefusal::TooLarge { .. } => "image_too_large",
            ImageRefusal::Busy => "upload_busy",
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
            ImageRefusal::BadChunk(why) => write!(f, "picture chunk refused: {why}"),
            ImageRefusal::NotAnImage => f.write_str("not a JPEG, PNG, GIF or WebP picture"),
        }
    }
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

    /// Whether it stalled, or has taken too long in all.
    pub fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last) >= UPLOAD_IDLE
            || now.saturating_duration_since(self.began) >= UPLOAD_LIMIT
    }
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
        assert!(up.expired(t0 + UPLOAD_IDLE));
        let mut up = Upload::start(t0, 5, "x", 100_000).unwrap();
        assert!(up.add(t0, "").is_err(), "an empty chunk");
        for s in 1..12 {
            let t = t0 + Duration::from_secs(s * 10);
            up.add(t, &b64(b"abc")).unwrap();
            assert_eq!(up.expired(t), t >= t0 + UPLOAD_LIMIT, "{s}");
        }
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
