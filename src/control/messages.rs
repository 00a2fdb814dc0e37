//! The protocol's messages: what viewers send, what they are sent, and
//! the views of the rest of the appliance it tells them about.

use serde::{Deserialize, Serialize};

use super::images::ImageRef;
use super::talk::AudioView;
use crate::capture::controls::CameraControl;
use crate::capture::supervise::CameraState;
use crate::serial::SerialState;

/// What viewers send.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(super) enum Incoming {
    Hello {
        name: String,
    },
    Chat {
        text: String,
    },
    Set {
        control: String,
        value: i64,
    },
    /// A picture of `size` bytes follows in `image_chunk`s.
    Image {
        id: u32,
        name: String,
        size: usize,
    },
    #[serde(rename = "image_chunk")]
    ImageChunk {
        id: u32,
        data: String,
    },
    /// Starts (`on`) or stops talking to the device's speaker.
    Talk {
        on: bool,
    },
}

/// What viewers are sent.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(super) enum Outgoing<'a> {
    Chat(&'a ChatLine),
    Telemetry(&'a Telemetry),
    Controls {
        may_set: bool,
        controls: &'a [CameraControl],
    },
    Camera {
        state: CameraState,
        name: &'a str,
        problem: Option<&'a str>,
    },
    Serial {
        state: SerialState,
        path: Option<&'a str>,
        baud: u32,
        holder: Option<&'a str>,
        you_hold: bool,
        problem: Option<&'a str>,
    },
    Error {
        reason: &'static str,
        message: String,
    },
    /// Motion started or ended (`record/events.rs`).
    Motion(&'a crate::record::MotionNotice),
    /// Who holds the talk floor.
    Talk {
        holder: Option<String>,
        you_hold: bool,
    },
    /// The device's microphone and speaker, and whether this viewer may talk.
    Audio {
        #[serde(flatten)]
        view: &'a AudioView,
        may_talk: bool,
    },
}

/// How the stream and one viewer's link are doing, pushed to it once a
/// second as `{"type":"telemetry",...}`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Telemetry {
    /// Viewers watching the device.
    pub viewers: usize,
    /// Its codec ("H.264", "VP8") and the encoder's target, kbit/s.
    pub codec: String,
    pub bitrate_kbps: Option<u32>,
    /// Frames sent to it in the last second.
    pub fps: f64,
    /// Its link, from str0m's stats.
    pub rtt_ms: Option<f64>,
    /// Lost after repairs, and on the wire before them (fractions).
    pub loss: Option<f32>,
    pub wire_loss: Option<f32>,
    pub nacks: u64,
    pub bwe_kbps: Option<u64>,
    /// How many times each datagram goes out (a lossy link gets 2 or 3).
    pub copies: u8,
    /// Below the bitrate floor: it gets only referenced frames.
    pub thinned: bool,
    /// Frames a second the camera delivers (the slate's 5 while it is lost).
    pub capture_fps: Option<f64>,
    /// Its audio, when its offer had any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioTelemetry>,
}

/// A viewer's audio and the device's speaker, in its telemetry.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct AudioTelemetry {
    /// Microphone packets sent to it, and its voice packets heard.
    pub packets_sent: u64,
    pub packets_received: u64,
    /// The speaker's jitter buffer now (target), ms.
    pub jitter_ms: Option<u64>,
    /// Speaker frames concealed (lost, no FEC), and playback underruns.
    pub concealed: u64,
    pub underruns: u64,
    /// The echo mode in force.
    pub echo: &'static str,
    /// The echo canceller's echo return loss enhancement (AEC3's), dB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub echo_erle_db: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChatLine {
    pub from: String,
    pub text: String,
    /// Wall-clock time it was said, Unix milliseconds.
    pub at: u64,
    /// A picture it carries (`text` is then its file name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRef>,
}

/// The camera as the protocol tells viewers about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CameraView {
    pub state: CameraState,
    /// What it is, e.g. "V4L2 /dev/video0 (vivid) 640x360 YU12 @ 30.0 fps".
    pub name: String,
    pub problem: Option<String>,
    pub controls: Vec<CameraControl>,
}

impl From<&crate::capture::SourceInfo> for CameraView {
    fn from(info: &crate::capture::SourceInfo) -> Self {
        let lost = info.state == CameraState::Lost;
        CameraView {
            state: info.state,
            name: match info.kind {
                "none" => "no camera yet".into(),
                _ => info.to_string(),
            },
            problem: info.problem.clone().filter(|_| lost),
            controls: info.controls.clone(),
        }
    }
}

/// What the protocol asks of the rest of the appliance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<Id> {
    /// Set the camera's control `id` to `value` (checked against the last
    /// [`CameraView`]); a refusal comes back through [`Control::refused`].
    SetControl { from: Id, id: String, value: i64 },
}

/// A message for one viewer's `rtcam` channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send<Id> {
    pub to: Id,
    pub text: String,
}
