//! What each running encoder is doing, for `/api/status` and `/metrics`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::encode::{Encoder, EncoderSettings};
use crate::frame::VideoCodec;

/// One running encoder, as `/api/status` lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EncoderStatus {
    pub codec: VideoCodec,
    pub implementation: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    pub viewers: usize,
    /// Frames the encoder was too slow to take.
    pub frames_dropped: u64,
    /// Frames encoded, and the time spent encoding them (seconds).
    pub frames_encoded: u64,
    pub encode_seconds: f64,
}

/// The running encoders, shared with the HTTP plane.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard(Arc<Mutex<BTreeMap<VideoCodec, EncoderStatus>>>);

impl StatusBoard {
    pub fn snapshot(&self) -> Vec<EncoderStatus> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<VideoCodec, EncoderStatus>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn update(&self, codec: VideoCodec, f: impl FnOnce(&mut EncoderStatus)) {
        if let Some(s) = self.lock().get_mut(&codec) {
            f(s);
        }
    }

    pub(super) fn running(&self, enc: &Encoder, viewers: usize) {
        let s = enc.settings();
        self.lock().insert(
            enc.codec(),
            EncoderStatus {
                codec: enc.codec(),
                implementation: enc.implementation(),
                width: s.width,
                height: s.height,
                fps: s.fps,
                bitrate_kbps: s.bitrate_kbps,
                viewers,
                frames_dropped: 0,
                frames_encoded: 0,
                encode_seconds: 0.0,
            },
        );
    }

    pub(super) fn passthrough(&self, s: EncoderSettings, viewers: usize) {
        self.lock().insert(
            VideoCodec::H264,
            EncoderStatus {
                codec: VideoCodec::H264,
                implementation: "passthrough (the camera's own H.264)".into(),
                width: s.width,
                height: s.height,
                fps: s.fps,
                bitrate_kbps: 0,
                viewers,
                frames_dropped: 0,
                frames_encoded: 0,
                encode_seconds: 0.0,
            },
        );
    }

    pub(super) fn stopped(&self, codec: VideoCodec) {
        self.lock().remove(&codec);
    }
}
