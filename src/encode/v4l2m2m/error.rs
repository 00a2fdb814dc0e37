//! What goes wrong with the hardware encoder, typed. Most of it costs one
//! frame and is counted (`health.rs` turns a pattern of it into
//! [`M2mError::Failed`]); [`M2mError::is_fatal`] errors end the encoder, and
//! the supervisor then stands openh264 in for it.

use std::io;
use std::path::PathBuf;

use super::health::Failure;

#[derive(Debug, thiserror::Error)]
pub enum M2mError {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error(
        "{driver} ({card}) is not a multi-planar memory-to-memory device with streaming \
         (capabilities {caps:#010x})"
    )]
    NotAnEncoder {
        driver: String,
        card: String,
        caps: u32,
    },
    #[error("the device codes no H.264 (its CAPTURE formats: {offered})")]
    NoH264 { offered: String },
    #[error("the device takes neither YU12 nor NV12 (its OUTPUT formats: {offered})")]
    InputFormatRefused { offered: String },
    #[error("the {queue} queue was asked for {asked} and set {got}")]
    FormatRefused {
        queue: &'static str,
        asked: String,
        got: String,
    },
    #[error("{width}x{height}: the encoder needs a nonzero, even size")]
    BadSize { width: u32, height: u32 },
    #[error("the driver refused {control} = {value}: {source}")]
    ControlRefused {
        control: &'static str,
        value: i32,
        source: io::Error,
    },
    #[error("the driver has no {control} control")]
    MissingControl { control: &'static str },
    #[error("{call}: {source}")]
    Ioctl {
        call: &'static str,
        source: io::Error,
    },
    #[error("the encoder stopped ({call}: {source})")]
    Stopped {
        call: &'static str,
        source: io::Error,
    },
    #[error("the driver gave the {queue} queue no buffers")]
    NoBuffers { queue: &'static str },
    #[error("{queue} buffer of {have} bytes, {need} needed")]
    BufferTooSmall {
        queue: &'static str,
        have: usize,
        need: usize,
    },
    #[error("the driver returned {queue} buffer {index}, which was never mapped")]
    UnknownBuffer { queue: &'static str, index: usize },
    #[error("the driver flagged {queue} buffer {index} as failed")]
    BufferFailed { queue: &'static str, index: usize },
    #[error("poll reported an error on the device")]
    PollError,
    #[error("the driver returned a picture stamped {0} us, which matches no queued frame")]
    UnmatchedTimestamp(u64),
    #[error("{0} pictures in flight and no room for another: frame skipped")]
    NoRoom(usize),
    #[error("the encoder failed: {0}")]
    Failed(Failure),
}

impl M2mError {
    /// Whether the encoder will never code again: the device said so, or
    /// its health gave up on it. Anything else costs the frame it hit.
    pub fn is_fatal(&self) -> bool {
        matches!(self, M2mError::Stopped { .. } | M2mError::Failed(_))
    }
}

/// EPIPE (the CAPTURE queue has ended) and ENODEV (the device went away)
/// mean the encoder will never produce again; anything else is the call's.
pub(super) fn ioctl_error(call: &'static str) -> impl Fn(io::Error) -> M2mError {
    move |source| match source.raw_os_error() {
        Some(libc::EPIPE | libc::ENODEV) => M2mError::Stopped { call, source },
        _ => M2mError::Ioctl { call, source },
    }
}
