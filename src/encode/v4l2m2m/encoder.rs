//! [`V4l2M2m`]: the IO shell around the pipeline and the health check.
//!
//! Each `encode` first takes whatever the driver finished (never waiting),
//! then queues the frame if a buffer is free (else the frame is skipped:
//! the driver is behind), then polls the device for a picture for at most
//! [`Timing::wait`] (under a frame interval). What comes back later goes
//! out through `poll_output`. So a late or lost picture costs its own frame
//! and never holds the thread for longer than that wait.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use v4l2_sys_mit as sys;

use super::device::{Dequeued, Device, Queue, Readiness};
use super::error::{M2mError, ioctl_error};
use super::health::Health;
use super::kernel::FdDevice;
use super::picture::{Assembler, Coded};
use super::pipeline::{Frame, Out, Pipeline, Returned, Timing, WriteOff};
use super::setup::{self, CODED_BUFFER_MIN, Layout};
use crate::encode::{EncodeError, EncoderSettings, VideoEncoder, check_size};
use crate::frame::{EncodedFrame, RawFrame, VideoCodec};

/// Raw frames the driver may hold: one being coded and two more, so a
/// driver that answers a frame or two late is still fed every frame.
const OUTPUT_BUFFERS: u32 = 3;
/// Coded buffers: each is given back as soon as its bytes are copied; the
/// spares hold pictures split over buffers, headers that come alone, and
/// results a late driver keeps.
const CAPTURE_BUFFERS: u32 = 5;
/// Keyframes forced for lost pictures, at most one per this: a driver that
/// drops often must not turn the stream into IDRs.
const LOSS_KEYFRAME_GAP: Duration = Duration::from_secs(1);
/// The shortest poll: a deadline that is due now still moves time on.
const MIN_POLL: Duration = Duration::from_millis(1);

/// OUTPUT timestamps: microseconds of capture time since the first frame,
/// strictly increasing. They key the matching of pictures to frames, and
/// being real time they also suit a driver whose rate control reads them.
#[derive(Debug, Default)]
struct Stamper {
    base: Option<Instant>,
    last_us: u64,
}

impl Stamper {
    fn stamp(&mut self, captured: Instant) -> u64 {
        let base = *self.base.get_or_insert(captured);
        let since = captured.saturating_duration_since(base).as_micros();
        let us = u64::try_from(since).unwrap_or(u64::MAX - 1);
        self.last_us = us.max(self.last_us).saturating_add(1);
        self.last_us
    }
}

/// What went wrong so far, for the logs.
#[derive(Debug, Default)]
struct Counts {
    written_off: u64,
    too_late: u64,
    errors: u64,
}

pub struct V4l2M2m {
    dev: Box<dyn Device>,
    path: PathBuf,
    settings: EncoderSettings,
    layout: Layout,
    /// Which OUTPUT buffers the driver holds.
    output_busy: Vec<bool>,
    captures: usize,
    stamper: Stamper,
    timing: Timing,
    pipeline: Pipeline<Coded>,
    health: Health,
    assembler: Assembler,
    /// Pictures in capture order, for `encode` and `poll_output`.
    ready: VecDeque<EncodedFrame>,
    /// The next frame queued asks for a keyframe.
    force_keyframe: bool,
    loss_keyframe_at: Option<Instant>,
    counts: Counts,
}

impl V4l2M2m {
    pub fn open(path: &Path, settings: EncoderSettings) -> Result<Self, EncodeError> {
        let dev = FdDevice::open(path).map_err(|source| M2mError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Self::with_device(Box::new(dev), path, settings)
    }

    /// The whole dev-encoder.rst initialisation on any `Device`, then
    /// buffers and streaming.
    pub(super) fn with_device(
        mut dev: Box<dyn Device>,
        path: &Path,
        settings: EncoderSettings,
    ) -> Result<Self, EncodeError> {
        let layout = setup::configure(dev.as_mut(), &settings)?;
        let d = dev.as_mut();
        let outputs = setup::setup_queue(d, Queue::Output, OUTPUT_BUFFERS, layout.size())?;
        let captures = setup::setup_queue(
            d,
            Queue::Capture,
            CAPTURE_BUFFERS,
            CODED_BUFFER_MIN as usize,
        )?;
        let timing = Timing::for_fps(settings.fps);
        let mut enc = V4l2M2m {
            dev,
            path: path.to_path_buf(),
            settings,
            layout,
            output_busy: vec![false; outputs],
            captures,
            stamper: Stamper::default(),
            timing,
            pipeline: Pipeline::new(timing, outputs.min(OUTPUT_BUFFERS as usize)),
            health: Health::default(),
            assembler: Assembler::default(),
            ready: VecDeque::new(),
            force_keyframe: false,
            loss_keyframe_at: None,
            counts: Counts::default(),
        };
        // From here on Drop stops the streams should anything fail.
        enc.start()?;
        Ok(enc)
    }

    /// Hands every CAPTURE buffer to the driver and starts both queues.
    fn start(&mut self) -> Result<(), M2mError> {
        for index in 0..self.captures {
            self.dev
                .queue_buffer(Queue::Capture, index, 0, 0)
                .map_err(ioctl_error("VIDIOC_QBUF(CAPTURE)"))?;
        }
        self.dev
            .stream(Queue::Output, true)
            .map_err(ioctl_error("VIDIOC_STREAMON(OUTPUT)"))?;
        self.dev
            .stream(Queue::Capture, true)
            .map_err(ioctl_error("VIDIOC_STREAMON(CAPTURE)"))
    }

    fn encode_frame(
        &mut self,
        frame: &RawFrame,
        keyframe: bool,
    ) -> Result<Option<EncodedFrame>, M2mError> {
        let now = self.service()?;
        self.force_keyframe |= keyframe;
        self.submit(frame, now)?;
        self.await_output(now)?;
        Ok(self.ready.pop_front())
    }

    /// Takes everything the driver finished, without waiting: OUTPUT
    /// buffers back, pictures matched, pictures past their deadline written
    /// off. Returns the device's time, or the verdict once it has failed.
    fn service(&mut self) -> Result<Instant, M2mError> {
        let now = self.dev.now();
        if let Err(e) = self.reclaim_outputs() {
            self.absorb(now, e)?;
        }
        if let Err(e) = self.take_captures(now) {
            self.absorb(now, e)?;
        }
        self.pipeline.handle_timeout(now);
        self.drain_pipeline(now);
        self.health.observe(now, self.pipeline.in_flight());
        match self.health.verdict(now) {
            Some(failure) => Err(M2mError::Failed(failure)),
            None => Ok(now),
        }
    }

    /// An error that costs a frame is logged (rate-limited) and counted
    /// toward the verdict; a fatal one ends the encoder.
    fn absorb(&mut self, now: Instant, e: M2mError) -> Result<(), M2mError> {
        if e.is_fatal() {
            return Err(e);
        }
        self.counts.errors += 1;
        self.health.error(now);
        crate::warn_limited!(
            "v4l2m2m {}: {e} ({} errors so far)",
            self.path.display(),
            self.counts.errors
        );
        Ok(())
    }

    /// Takes back every OUTPUT buffer the driver is done with.
    fn reclaim_outputs(&mut self) -> Result<(), M2mError> {
        while let Some(d) = self
            .dev
            .dequeue_buffer(Queue::Output)
            .map_err(ioctl_error("VIDIOC_DQBUF(OUTPUT)"))?
        {
            let busy = self
                .output_busy
                .get_mut(d.index)
                .ok_or(M2mError::UnknownBuffer {
                    queue: Queue::Output.name(),
                    index: d.index,
                })?;
            *busy = false;
        }
        Ok(())
    }

    fn take_captures(&mut self, now: Instant) -> Result<(), M2mError> {
        while let Some(d) = self
            .dev
            .dequeue_buffer(Queue::Capture)
            .map_err(ioctl_error("VIDIOC_DQBUF(CAPTURE)"))?
        {
            self.take_capture(d, now)?;
        }
        Ok(())
    }

    /// Copies a CAPTURE buffer's bytes and gives the buffer back; a whole
    /// picture goes to the pipeline, which finds its frame by the stamp.
    fn take_capture(&mut self, d: Dequeued, now: Instant) -> Result<(), M2mError> {
        let queue = Queue::Capture.name();
        let failed = d.flags & sys::V4L2_BUF_FLAG_ERROR != 0;
        let data = self
            .dev
            .buffer(Queue::Capture, d.index)
            .ok_or(M2mError::UnknownBuffer {
                queue,
                index: d.index,
            })?;
        let end = d.bytesused.min(data.len());
        let full = d.bytesused >= data.len();
        let coded = if failed {
            self.assembler.discard();
            None
        } else {
            let bytes = &data[d.data_offset.min(end)..end];
            self.assembler.push(bytes, full, d.flags)
        };
        self.dev
            .queue_buffer(Queue::Capture, d.index, 0, 0)
            .map_err(ioctl_error("VIDIOC_QBUF(CAPTURE)"))?;
        if failed {
            self.pipeline.flagged(d.timestamp_us, now);
            return Err(M2mError::BufferFailed {
                queue,
                index: d.index,
            });
        }
        match coded.map(|c| self.pipeline.returned(d.timestamp_us, c, now)) {
            Some(Returned::Unknown) => Err(M2mError::UnmatchedTimestamp(d.timestamp_us)),
            Some(Returned::TooLate) => {
                self.counts.too_late += 1;
                crate::info_limited!(
                    "v4l2m2m {}: a picture came back after its frame was written off \
                     ({} so far); dropped",
                    self.path.display(),
                    self.counts.too_late
                );
                Ok(())
            }
            Some(Returned::Matched) | None => Ok(()),
        }
    }

    /// Pictures, in capture order, into `ready`; frames written off are
    /// counted and ask for a keyframe.
    fn drain_pipeline(&mut self, now: Instant) {
        while let Some(out) = self.pipeline.poll_output() {
            match out {
                Out::Picture { frame, coded } => {
                    self.health.picture(now);
                    let picture = self.picture(frame, coded);
                    self.ready.push_back(picture);
                }
                Out::WrittenOff { frame, why } => self.written_off(now, frame, why),
            }
        }
    }

    /// The picture with its frame's capture times.
    fn picture(&mut self, frame: Frame, coded: Coded) -> EncodedFrame {
        let (data, keyframe) = self.assembler.finish(coded);
        EncodedFrame {
            codec: VideoCodec::H264,
            droppable: crate::frame::h264_unreferenced(&data),
            data: Arc::from(data),
            keyframe,
            width: self.settings.width as usize,
            height: self.settings.height as usize,
            captured: frame.captured,
            stamp_ms: frame.stamp_ms,
            seq: 0,
        }
    }

    /// A frame skipped. The pictures after it may refer to one the viewers
    /// never get (a driver that coded it and lost the result), so the next
    /// frame queued is a keyframe, at most one a [`LOSS_KEYFRAME_GAP`].
    fn written_off(&mut self, now: Instant, frame: Frame, why: WriteOff) {
        self.health.lost();
        self.counts.written_off += 1;
        crate::warn_limited!(
            "v4l2m2m {}: the picture of the frame stamped {} ms did not come ({why:?}); \
             the frame is skipped ({} so far)",
            self.path.display(),
            frame.stamp_ms,
            self.counts.written_off
        );
        let due = self
            .loss_keyframe_at
            .is_none_or(|t| now.saturating_duration_since(t) >= LOSS_KEYFRAME_GAP);
        if due {
            self.loss_keyframe_at = Some(now);
            self.force_keyframe = true;
        }
    }

    /// Queues the frame in a free OUTPUT buffer. With none free, or the
    /// pipeline full (the driver is behind), the frame is skipped; a
    /// keyframe ask waits for the next frame queued.
    fn submit(&mut self, frame: &RawFrame, now: Instant) -> Result<(), M2mError> {
        let free = self.output_busy.iter().position(|busy| !busy);
        let queued = match free {
            Some(index) if self.pipeline.has_room() => self.queue_frame(frame, index, now),
            _ => Err(M2mError::NoRoom(self.pipeline.in_flight())),
        };
        if let Err(e) = queued {
            self.absorb(now, e)?;
        }
        self.health.observe(now, self.pipeline.in_flight());
        Ok(())
    }

    fn queue_frame(
        &mut self,
        frame: &RawFrame,
        index: usize,
        now: Instant,
    ) -> Result<(), M2mError> {
        if self.force_keyframe {
            self.dev
                .set_control(sys::V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME, 1)
                .map_err(ioctl_error("VIDIOC_S_EXT_CTRLS(FORCE_KEY_FRAME)"))?;
        }
        let layout = self.layout;
        let dst = self
            .dev
            .buffer(Queue::Output, index)
            .ok_or(M2mError::UnknownBuffer {
                queue: Queue::Output.name(),
                index,
            })?;
        let used = layout.copy(frame, dst)?;
        let ts_us = self.stamper.stamp(frame.captured);
        self.dev
            .queue_buffer(Queue::Output, index, used, ts_us)
            .map_err(ioctl_error("VIDIOC_QBUF(OUTPUT)"))?;
        self.force_keyframe = false;
        self.output_busy[index] = true;
        let f = Frame {
            captured: frame.captured,
            stamp_ms: frame.stamp_ms,
        };
        self.pipeline.queued(ts_us, f, now);
        Ok(())
    }

    /// Polls the device until a picture is ready, none is owed, or the
    /// wait (under a frame interval) is over.
    fn await_output(&mut self, from: Instant) -> Result<(), M2mError> {
        let until = from + self.timing.wait;
        while self.ready.is_empty() && self.pipeline.in_flight() > 0 {
            let now = self.dev.now();
            if now >= until {
                break;
            }
            let next = self.pipeline.poll_timeout().map_or(until, |t| t.min(until));
            let left = next.saturating_duration_since(now).max(MIN_POLL);
            let trouble = match self.dev.wait(Queue::Capture, left) {
                Ok(Readiness {
                    error: true,
                    ready: false,
                }) => Some(M2mError::PollError),
                Ok(_) => None,
                Err(e) => Some(ioctl_error("poll")(e)),
            };
            // A poll that errs answers at once: stop rather than spin.
            if let Some(e) = trouble {
                self.absorb(now, e)?;
                self.service()?;
                break;
            }
            self.service()?;
        }
        Ok(())
    }
}

impl VideoEncoder for V4l2M2m {
    fn codec(&self) -> VideoCodec {
        VideoCodec::H264
    }

    fn implementation(&self) -> String {
        format!("v4l2m2m {}", self.path.display())
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
        Ok(self.encode_frame(frame, keyframe)?)
    }

    /// Pictures that came back after their frame's `encode` returned.
    fn poll_output(&mut self) -> Result<Option<EncodedFrame>, EncodeError> {
        if self.ready.is_empty() {
            self.service()?;
        }
        Ok(self.ready.pop_front())
    }

    /// Live, through the bitrate control alone: no keyframe.
    fn set_bitrate(&mut self, kbps: u32) -> Result<(), EncodeError> {
        let value = setup::bitrate_bps(kbps);
        self.dev
            .set_control(sys::V4L2_CID_MPEG_VIDEO_BITRATE, value)
            .map_err(|source| M2mError::ControlRefused {
                control: "BITRATE",
                value,
                source,
            })?;
        self.settings.bitrate_kbps = kbps;
        Ok(())
    }
}

impl Drop for V4l2M2m {
    /// Stops both queues; the device then unmaps its buffers and closes.
    fn drop(&mut self) {
        for q in [Queue::Capture, Queue::Output] {
            if let Err(e) = self.dev.stream(q, false) {
                tracing::debug!("v4l2m2m: STREAMOFF({}): {e}", q.name());
            }
        }
    }
}
