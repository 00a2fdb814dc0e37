//! The data channels: what viewers say goes to the protocol
//! (`control/`), what it answers goes back out, and the serial bridge's
//! bytes go to every viewer's `serial` channel.

use super::drain::drain;
use super::{ChannelInput, SessionError, SessionEvent, Sessions};
use crate::capture::controls::ControlError;
use crate::control::{CameraView, Request};
use crate::rtc::Grant;
use crate::rtc::viewer::ViewerId;
use crate::serial::SerialView;
use crate::serial::queue::QueueFull;

impl Sessions {
    /// Sends a text message on a viewer's `rtcam` channel. A channel whose
    /// send buffer is full (a viewer that does not read) loses the message,
    /// counted; the video goes on.
    pub fn send_channel(&mut self, id: ViewerId, text: &str) -> Result<(), SessionError> {
        self.write_channel(id, text)?;
        self.route_channels();
        Ok(())
    }

    /// What a viewer may do on its channel: the name its chat lines carry
    /// (its token's, for WHEP) and whether it may change the camera.
    pub fn grant(&mut self, id: ViewerId, grant: Grant) {
        if let Some(v) = self.viewer_mut(id) {
            v.token_name = grant.token_name;
            v.may_control = grant.may_control;
        }
    }

    /// The camera's state and controls, told to every viewer when they
    /// change.
    pub fn set_camera(&mut self, view: CameraView) {
        self.control.camera(view);
        self.route_channels();
    }

    /// Motion started or ended, told to every viewer.
    pub fn motion(&mut self, notice: &crate::record::MotionNotice) {
        self.control.motion(notice);
        self.route_channels();
    }

    /// The serial bridge's state (open, absent, off), told to every viewer
    /// when it changes.
    pub fn set_serial(&mut self, view: SerialView) {
        self.control.serial(view);
        self.route_channels();
    }

    /// Bytes from the serial port, to every viewer's `serial` channel (one
    /// whose buffer is full loses them, counted).
    pub fn serial_received(&mut self, bytes: &[u8]) {
        for v in &mut self.viewers {
            let Some(cid) = v.serial_channel else {
                continue;
            };
            let written = v.rtc.channel(cid).map(|mut c| c.write(true, bytes));
            if !matches!(written, Some(Ok(true))) {
                v.channel_dropped += 1;
            }
            drain(v, &mut self.transmits, &mut self.events, &self.config);
        }
    }

    /// The serial port's queue was full: viewer `id`'s bytes were dropped
    /// (it is told at the first drop since its last queued write).
    pub fn serial_overflow(&mut self, id: ViewerId, full: QueueFull) {
        self.control.serial_overflow(id, full);
        self.route_channels();
    }

    /// Viewer `id`'s bytes went into the serial port's queue; how many of
    /// its writes were dropped since its last queued one.
    pub fn serial_queued(&mut self, id: ViewerId) -> u64 {
        self.control.serial_queued(id)
    }

    /// The speaker's jitter buffer, concealment and underruns now, and the
    /// echo mode (the telemetry tells viewers).
    pub fn set_speaker_stats(&mut self, speaker: crate::control::AudioTelemetry) {
        self.speaker = speaker;
    }

    /// The camera's frame rate now (the telemetry tells viewers).
    pub fn set_capture_fps(&mut self, fps: f64) {
        self.capture_fps = Some((fps * 10.0).round() / 10.0);
    }

    /// Picture `n` shared in the chat, if it is still kept.
    pub fn chat_image(&self, n: u64) -> Option<crate::control::images::Image> {
        self.control.image(n)
    }

    /// Picture uploads cancelled for coming too slowly, since the start.
    pub fn uploads_cancelled(&self) -> u64 {
        self.control.uploads_cancelled()
    }

    /// The camera refused the setting viewer `id` asked for.
    pub fn control_refused(&mut self, id: ViewerId, error: ControlError) {
        self.control.refused(id, error);
        self.route_channels();
    }

    pub(super) fn write_channel(&mut self, id: ViewerId, text: &str) -> Result<(), SessionError> {
        let i = self.viewer_index(id).ok_or(SessionError::UnknownViewer)?;
        let v = &mut self.viewers[i];
        let cid = v.channel.ok_or(SessionError::NoChannel)?;
        let mut channel = v.rtc.channel(cid).ok_or(SessionError::NoChannel)?;
        match channel.write(false, text.as_bytes()) {
            Ok(true) => {}
            Ok(false) => v.channel_dropped += 1,
            Err(e) => {
                tracing::debug!(viewer = %id, "data channel write: {e}");
                v.channel_dropped += 1;
            }
        }
        drain(v, &mut self.transmits, &mut self.events, &self.config);
        Ok(())
    }

    /// What arrived on viewers' data channels goes to the protocol, and
    /// what it answers goes out (which may bring more: a bounded few turns).
    pub(super) fn route_channels(&mut self) {
        let wall_ms = self.config.wall_epoch_ms
            + self.now.saturating_duration_since(self.epoch).as_millis() as u64;
        for _ in 0..4 {
            let mut moved = false;
            for v in &mut self.viewers {
                while let Some(input) = v.inbox.pop_front() {
                    moved = true;
                    match input {
                        ChannelInput::Open => {
                            self.control.join(
                                self.now,
                                v.id,
                                v.token_name.as_deref(),
                                v.may_control,
                            );
                            self.control.address(v.id, v.from);
                        }
                        ChannelInput::Data { data, binary } => {
                            self.control.handle(self.now, wall_ms, v.id, &data, binary)
                        }
                        ChannelInput::Closed => self.control.leave(v.id),
                        ChannelInput::Serial(bytes) => {
                            if self.control.serial_write(self.now, v.id, bytes.len()) {
                                self.events
                                    .push_back(SessionEvent::SerialWrite(v.id, bytes));
                            }
                        }
                    }
                }
            }
            while let Some(send) = self.control.poll_output() {
                moved = true;
                // A viewer that left meanwhile has no channel: nothing to do.
                let _ = self.write_channel(send.to, &send.text);
            }
            while let Some(request) = self.control.poll_request() {
                let Request::SetControl { from, id, value } = request;
                self.events.push_back(SessionEvent::SetControl {
                    from,
                    control: id,
                    value,
                });
            }
            if !moved {
                return;
            }
        }
    }
}
