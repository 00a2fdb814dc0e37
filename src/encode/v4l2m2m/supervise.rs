//! [`Supervised`]: the hardware encoder the pool runs, with openh264
//! standing in whenever it fails; the IO shell around [`Policy`].
//!
//! The hardware encoder only fails here when it has really failed (its
//! health says so, or the device ended): then it is closed, openh264
//! encodes the same frame as a keyframe, and the hardware is reopened
//! later, tried beside openh264, and takes over again once it works. The
//! viewers keep their sessions through every switch: each starts with a
//! keyframe. The policy's clock is the frames' capture time.

use std::collections::VecDeque;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::encoder::V4l2M2m;
use super::policy::{Mode, Policy, RETRY_FIRST, Step};
use crate::encode::openh264::OpenH264;
use crate::encode::{EncodeError, EncoderSettings, VideoEncoder, check_size};
use crate::frame::{EncodedFrame, RawFrame, VideoCodec};

/// Opens an encoder: the hardware one (again), or openh264.
pub type Opener =
    Box<dyn FnMut(EncoderSettings) -> Result<Box<dyn VideoEncoder>, EncodeError> + Send>;

fn open_hardware(path: PathBuf) -> Opener {
    Box::new(
        move |s: EncoderSettings| -> Result<Box<dyn VideoEncoder>, EncodeError> {
            let enc: Box<dyn VideoEncoder> = Box::new(V4l2M2m::open(&path, s)?);
            Ok(enc)
        },
    )
}

fn open_openh264() -> Opener {
    Box::new(
        |s: EncoderSettings| -> Result<Box<dyn VideoEncoder>, EncodeError> {
            let enc: Box<dyn VideoEncoder> = Box::new(OpenH264::new(s)?);
            Ok(enc)
        },
    )
}

pub struct Supervised {
    /// "v4l2m2m /dev/video11", for the logs and the status.
    hardware: String,
    open_hw: Opener,
    open_sw: Opener,
    settings: EncoderSettings,
    hw: Option<Box<dyn VideoEncoder>>,
    sw: Option<Box<dyn VideoEncoder>>,
    policy: Policy,
    /// Pictures for `poll_output`: those after the hardware's first
    /// keyframe in a handover.
    pending: VecDeque<EncodedFrame>,
    /// openh264's next picture must be a keyframe: it takes over a stream.
    sw_key: bool,
    /// The last frame's capture time: the policy's clock between frames.
    now: Instant,
}

impl Supervised {
    /// The hardware encoder at `path`; openh264 from the start (the
    /// hardware tried again later) when it does not open.
    pub fn open(path: &Path, settings: EncoderSettings) -> Result<Self, EncodeError> {
        let hardware = format!("v4l2m2m {}", path.display());
        let mut open_hw = open_hardware(path.to_path_buf());
        let hw = match open_hw(settings) {
            Ok(hw) => Some(hw),
            Err(e) => {
                tracing::warn!(
                    "{hardware} did not open ({e}); encoding with openh264, \
                     the hardware is tried again in {RETRY_FIRST:?}"
                );
                None
            }
        };
        let openers = (open_hw, open_openh264());
        Self::build(hardware, openers, settings, hw, Instant::now())
    }

    /// openh264 now, the hardware at `path` tried later: what replaces a
    /// supervisor whose openh264 failed.
    pub fn standing_in(path: &Path, settings: EncoderSettings) -> Result<Self, EncodeError> {
        let hardware = format!("v4l2m2m {}", path.display());
        let openers = (open_hardware(path.to_path_buf()), open_openh264());
        Self::build(hardware, openers, settings, None, Instant::now())
    }

    /// `hw`: the hardware encoder, already open, or `None` to start on
    /// openh264.
    pub(super) fn build(
        hardware: String,
        (open_hw, open_sw): (Opener, Opener),
        settings: EncoderSettings,
        hw: Option<Box<dyn VideoEncoder>>,
        now: Instant,
    ) -> Result<Self, EncodeError> {
        let policy = match hw {
            Some(_) => Policy::on_hardware(now),
            None => Policy::on_software(now),
        };
        let mut me = Supervised {
            hardware,
            open_hw,
            open_sw,
            settings,
            hw,
            sw: None,
            policy,
            pending: VecDeque::new(),
            sw_key: false,
            now,
        };
        if me.hw.is_none() {
            me.software()?;
        }
        Ok(me)
    }

    /// openh264, opened when first needed.
    fn software(&mut self) -> Result<&mut (dyn VideoEncoder + 'static), EncodeError> {
        let sw = match self.sw.take() {
            Some(sw) => sw,
            None => (self.open_sw)(self.settings)?,
        };
        Ok(self.sw.insert(sw).as_mut())
    }

    fn on_software(
        &mut self,
        frame: &RawFrame,
        keyframe: bool,
    ) -> Result<Option<EncodedFrame>, EncodeError> {
        let key = std::mem::take(&mut self.sw_key) || keyframe;
        self.software()?.encode(frame, key)
    }

    fn on_hardware(
        &mut self,
        frame: &RawFrame,
        keyframe: bool,
    ) -> Result<Option<EncodedFrame>, EncodeError> {
        let result = match self.hw.as_mut() {
            Some(hw) => hw.encode(frame, keyframe),
            None => return self.fall_back(&"it is not open", frame),
        };
        match result {
            Ok(out) => Ok(out),
            Err(e) => self.fall_back(&e, frame),
        }
    }

    /// The hardware failed on air: openh264 encodes this frame, a keyframe.
    fn fall_back(
        &mut self,
        why: &dyn Display,
        frame: &RawFrame,
    ) -> Result<Option<EncodedFrame>, EncodeError> {
        self.hardware_failed(why);
        self.on_software(frame, true)
    }

    /// Closes the hardware (on air, on trial or in the handover): openh264
    /// alone until the next try.
    fn hardware_failed(&mut self, why: &dyn Display) {
        let on_air = matches!(self.policy.mode(), Mode::Hardware | Mode::Handover { .. });
        self.hw = None;
        self.pending.clear();
        self.sw_key |= on_air;
        let retry_at = match self.policy.mode() {
            Mode::Software { retry_at } => retry_at,
            _ => self.policy.hardware_failed(self.now),
        };
        tracing::warn!(
            "{} failed ({why}); openh264 stands in, the hardware is tried again in {:?}",
            self.hardware,
            retry_at.saturating_duration_since(self.now)
        );
    }

    /// The hardware's next chance: reopened, it is on trial.
    fn retry(&mut self) {
        match (self.open_hw)(self.settings) {
            Ok(hw) => {
                tracing::info!("{} reopened: on trial beside openh264", self.hardware);
                self.hw = Some(hw);
                self.policy.trial_started();
            }
            Err(e) => {
                let retry_at = self.policy.hardware_failed(self.now);
                tracing::warn!(
                    "{} does not open yet ({e}); tried again in {:?}",
                    self.hardware,
                    retry_at.saturating_duration_since(self.now)
                );
            }
        }
    }

    /// openh264's picture goes out; the hardware encodes the same frame,
    /// and its pictures are counted.
    fn on_trial(
        &mut self,
        frame: &RawFrame,
        keyframe: bool,
    ) -> Result<Option<EncodedFrame>, EncodeError> {
        let out = self.on_software(frame, keyframe)?;
        match self.feed_hardware(Some(frame), false) {
            Ok(pictures) => {
                self.policy.trial_pictures(count(&pictures));
                match self.policy.trial_frame(self.now) {
                    Step::Passed => tracing::info!(
                        "{} works again: it takes over from its next keyframe",
                        self.hardware
                    ),
                    Step::Failed => self.hardware_failed(&"too few pictures on trial"),
                    Step::Going => {}
                }
            }
            Err(e) => self.hardware_failed(&e),
        }
        Ok(out)
    }

    /// The hardware alone, asked for a keyframe on every frame until one
    /// comes: its pictures go out from there.
    fn on_handover(
        &mut self,
        frame: &RawFrame,
        after: Instant,
    ) -> Result<Option<EncodedFrame>, EncodeError> {
        match self.feed_hardware(Some(frame), true) {
            Ok(pictures) => self.hand_over(pictures, after),
            Err(e) => return self.fall_back(&e, frame),
        }
        if let Some(first) = self.pending.pop_front() {
            return Ok(Some(first));
        }
        if self.policy.handover_frame(self.now) == Step::Failed {
            return self.fall_back(&"no keyframe in the handover", frame);
        }
        Ok(None)
    }

    /// Keeps the hardware's pictures from its first keyframe after the
    /// trial on (earlier ones are the trial's), and puts it on air then.
    fn hand_over(&mut self, pictures: Vec<EncodedFrame>, after: Instant) {
        let mut on_air = false;
        for p in pictures {
            on_air |= p.keyframe && p.captured > after;
            if on_air {
                self.pending.push_back(p);
            }
        }
        if on_air {
            self.policy.handed_over(self.now);
            self.sw = None;
            tracing::info!("{} is back on air", self.hardware);
        }
    }

    /// One frame into the hardware (none: only what it has ready), and
    /// every picture it has ready.
    fn feed_hardware(
        &mut self,
        frame: Option<&RawFrame>,
        keyframe: bool,
    ) -> Result<Vec<EncodedFrame>, EncodeError> {
        let Some(hw) = self.hw.as_mut() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        if let Some(frame) = frame {
            out.extend(hw.encode(frame, keyframe)?);
        }
        while let Some(late) = hw.poll_output()? {
            out.push(late);
        }
        Ok(out)
    }

    /// Late pictures of the hardware, whatever the mode.
    fn poll_hardware(&mut self) -> Option<EncodedFrame> {
        let pictures = match self.feed_hardware(None, false) {
            Ok(pictures) => pictures,
            Err(e) => {
                self.hardware_failed(&e);
                return None;
            }
        };
        match self.policy.mode() {
            Mode::Hardware => self.pending.extend(pictures),
            Mode::Trial { .. } => self.policy.trial_pictures(count(&pictures)),
            Mode::Handover { after, .. } => self.hand_over(pictures, after),
            Mode::Software { .. } => {}
        }
        self.pending.pop_front()
    }
}

fn count(pictures: &[EncodedFrame]) -> u32 {
    u32::try_from(pictures.len()).unwrap_or(u32::MAX)
}

impl VideoEncoder for Supervised {
    fn codec(&self) -> VideoCodec {
        VideoCodec::H264
    }

    fn implementation(&self) -> String {
        match self.policy.mode() {
            Mode::Hardware | Mode::Handover { .. } => self.hardware.clone(),
            Mode::Software { .. } | Mode::Trial { .. } => {
                let sw = self
                    .sw
                    .as_ref()
                    .map_or_else(|| "openh264".to_string(), |e| e.implementation());
                format!("{sw}, standing in for {}", self.hardware)
            }
        }
    }

    fn settings(&self) -> EncoderSettings {
        self.settings
    }

    fn encode(
        &mut self,
        frame: &RawFrame,
        keyframe: bool,
    ) -> Result<Option<EncodedFrame>, EncodeError> {
        check_size(&self.settings, frame)?;
        self.now = frame.captured;
        if self.policy.retry_due(self.now) {
            self.retry();
        }
        match self.policy.mode() {
            Mode::Hardware => self.on_hardware(frame, keyframe),
            Mode::Software { .. } => self.on_software(frame, keyframe),
            Mode::Trial { .. } => self.on_trial(frame, keyframe),
            Mode::Handover { after, .. } => self.on_handover(frame, after),
        }
    }

    fn poll_output(&mut self) -> Result<Option<EncodedFrame>, EncodeError> {
        if let Some(out) = self.pending.pop_front() {
            return Ok(Some(out));
        }
        Ok(self.poll_hardware())
    }

    fn set_bitrate(&mut self, kbps: u32) -> Result<(), EncodeError> {
        self.settings.bitrate_kbps = kbps;
        let hw = self.hw.as_mut().map_or(Ok(()), |e| e.set_bitrate(kbps));
        let sw = self.sw.as_mut().map_or(Ok(()), |e| e.set_bitrate(kbps));
        hw.and(sw)
    }
}
