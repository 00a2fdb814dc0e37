//! Why a viewer's message was refused: a typed reason, told back to it as
//! `{"type":"error","reason":R,"message":M}`.

use std::fmt;

use super::images::ImageRefusal;
use super::{MAX_MESSAGE_BYTES, MAX_NAME_CHARS, MAX_TEXT_CHARS, MESSAGES_PER_SECOND};
use crate::capture::controls::ControlError;
use crate::serial::MAX_CHUNK;
use crate::serial::queue::QueueFull;

/// Why a viewer's message was refused, told back to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Binary data on the text channel.
    NotText,
    TooLarge {
        bytes: usize,
    },
    NotJson(String),
    UnknownType(String),
    TextTooLong {
        chars: usize,
    },
    EmptyText,
    BadName,
    /// The name comes from the viewer's token.
    NameFixed,
    TooFast,
    /// Its token lets it watch, not change the camera.
    NotAllowed,
    /// An unknown control, a value out of its range, or one the camera
    /// refused.
    Control(ControlError),
    /// Over [`MAX_CHUNK`] bytes on the `serial` channel.
    SerialTooLarge {
        bytes: usize,
    },
    /// Another viewer holds the serial port.
    SerialBusy {
        holder: String,
    },
    /// No serial port is bridged now (off, missing or vanished).
    SerialUnavailable(String),
    /// The serial port's queue was full: the holder's bytes were dropped
    /// (said once, until a write of its is queued again).
    SerialQueueFull(QueueFull),
    Image(ImageRefusal),
    /// Another viewer is talking.
    TalkBusy {
        holder: String,
    },
    /// The device cannot play a viewer's voice (no speaker, or it vanished).
    TalkUnavailable(String),
}

impl Refusal {
    /// A short machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NotText => "not_text",
            Refusal::TooLarge { .. } => "too_large",
            Refusal::NotJson(_) => "bad_json",
            Refusal::UnknownType(_) => "unknown_type",
            Refusal::TextTooLong { .. } => "text_too_long",
            Refusal::EmptyText => "empty_text",
            Refusal::BadName => "bad_name",
            Refusal::NameFixed => "name_fixed",
            Refusal::TooFast => "too_fast",
            Refusal::NotAllowed => "not_allowed",
            Refusal::Control(e) => e.reason(),
            Refusal::SerialTooLarge { .. } => "too_large",
            Refusal::SerialBusy { .. } => "serial_busy",
            Refusal::SerialUnavailable(_) => "serial_unavailable",
            Refusal::SerialQueueFull(_) => "serial_queue_full",
            Refusal::Image(r) => r.reason(),
            Refusal::TalkBusy { .. } => "talk_busy",
            Refusal::TalkUnavailable(_) => "talk_unavailable",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotText => f.write_str("this channel takes JSON text, not binary data"),
            Refusal::TooLarge { bytes } => {
                write!(f, "message of {bytes} bytes; at most {MAX_MESSAGE_BYTES}")
            }
            Refusal::NotJson(why) => write!(f, "not a JSON object with a \"type\": {why}"),
            Refusal::UnknownType(t) => write!(f, "unknown message type \"{t}\""),
            Refusal::TextTooLong { chars } => {
                write!(
                    f,
                    "chat text of {chars} characters; at most {MAX_TEXT_CHARS}"
                )
            }
            Refusal::EmptyText => f.write_str("empty chat text"),
            Refusal::BadName => write!(
                f,
                "a name is 1 to {MAX_NAME_CHARS} characters, without control characters"
            ),
            Refusal::NameFixed => f.write_str("this viewer's name comes from its token"),
            Refusal::TooFast => write!(
                f,
                "too many messages: at most {MESSAGES_PER_SECOND} a second"
            ),
            Refusal::NotAllowed => {
                f.write_str("this viewer's token lets it watch, not change the camera")
            }
            Refusal::Control(e) => e.fmt(f),
            Refusal::SerialTooLarge { bytes } => {
                write!(f, "serial message of {bytes} bytes; at most {MAX_CHUNK}")
            }
            Refusal::SerialBusy { holder } => write!(
                f,
                "{holder} holds the serial port; it is free after {} s without writing",
                crate::serial::floor::IDLE_RELEASE.as_secs()
            ),
            Refusal::SerialUnavailable(why) => write!(f, "the serial port is unavailable: {why}"),
            Refusal::SerialQueueFull(full) => write!(
                f,
                "{full}; the line is slower than the writes, so more are dropped until it catches up"
            ),
            Refusal::Image(r) => r.fmt(f),
            Refusal::TalkBusy { holder } => write!(
                f,
                "{holder} is talking; the device's speaker is free when they stop"
            ),
            Refusal::TalkUnavailable(why) => write!(f, "talking is unavailable: {why}"),
        }
    }
}
