//! A stateful encoder driver in memory, for the tests: it aligns strides
//! to 64 and heights to 16, codes each OUTPUT buffer into fake H.264 in the
//! next CAPTURE buffer with the same timestamp, and misbehaves as scripted:
//! it can drop pictures, hand them back late or swapped, flag them failed,
//! stall, or fail every ioctl for a while. Its clock is simulated: the test
//! moves it to each frame's capture time, and a poll that finds nothing
//! moves it by the poll's timeout, so nothing sleeps.

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use v4l2_sys_mit as sys;

use super::device::{
    Caps, Dequeued, Device, PIX_FMT_H264, PIX_FMT_NV12, PIX_FMT_YUV420, PixFormat, Queue,
    Readiness, fourcc,
};
use super::encoder::V4l2M2m;
use super::error::M2mError;
use super::picture::nal_types;
use crate::encode::{EncodeError, EncoderSettings};
use crate::frame::RawFrame;

pub(super) const SPS: [u8; 8] = [0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f];
pub(super) const PPS: [u8; 6] = [0, 0, 0, 1, 0x68, 0xce];
/// The tests' frame interval (about 30 fps).
pub(super) const FRAME: Duration = Duration::from_millis(33);

/// What the fake driver saw.
#[derive(Debug, Default)]
pub(super) struct Log {
    pub(super) formats: Vec<(Queue, PixFormat)>,
    pub(super) controls: Vec<(u32, i32)>,
    pub(super) frame_rate: Option<u32>,
    /// Each OUTPUT buffer's bytes as queued.
    pub(super) inputs: Vec<Vec<u8>>,
    pub(super) stream_offs: Vec<Queue>,
}

/// What the test changes while the encoder runs, and reads back; shared by
/// every fake opened on one [`Rig`] (a device reopened is the same device).
#[derive(Debug)]
pub(super) struct Shared {
    /// The device's clock.
    pub(super) now: Instant,
    pub(super) log: Log,
    /// Every ioctl answers EIO and poll POLLERR.
    pub(super) failing: bool,
    /// Frames are taken and none is coded.
    pub(super) stalled: bool,
}

/// The test's handle on the device.
#[derive(Debug, Clone)]
pub(super) struct Rig {
    shared: Arc<Mutex<Shared>>,
    /// When frame 0 is captured.
    pub(super) t0: Instant,
}

impl Rig {
    pub(super) fn new() -> Self {
        let t0 = Instant::now();
        let shared = Shared {
            now: t0,
            log: Log::default(),
            failing: false,
            stalled: false,
        };
        Rig {
            shared: Arc::new(Mutex::new(shared)),
            t0,
        }
    }

    pub(super) fn state(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap()
    }

    pub(super) fn now(&self) -> Instant {
        self.state().now
    }

    /// Moves the clock to `t`, never back (a poll may have moved it past).
    pub(super) fn at(&self, t: Instant) {
        let mut s = self.state();
        s.now = s.now.max(t);
    }

    /// Frame `n` of the tests' stream, at its capture time.
    pub(super) fn frame(&self, w: usize, h: usize, n: u64) -> RawFrame {
        frame(w, h, n, self.t0)
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Failure {
    /// The picture comes back with V4L2_BUF_FLAG_ERROR.
    BufferFlag,
    /// DQBUF answers EPIPE from then on.
    Epipe,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Config {
    pub(super) caps: Option<u32>,
    pub(super) no_h264: bool,
    pub(super) no_yuv420: bool,
    /// Controls answered with EINVAL.
    pub(super) refuse: Vec<u32>,
    /// Controls QUERYCTRL does not know.
    pub(super) missing: Vec<u32>,
    /// From this picture (0-based) on, fail so.
    pub(super) fail: Option<(usize, Failure)>,
    /// Sends an IDR's SPS/PPS in a buffer of their own.
    pub(super) separate_headers: bool,
    /// Splits each P picture over a full buffer and the next one.
    pub(super) split: bool,
    /// Pictures taken and never coded (their OUTPUT buffer comes back).
    pub(super) drop: Vec<usize>,
    /// (picture, n): its result comes back after those of the next n
    /// pictures (n = 1: two results swapped).
    pub(super) delay: Vec<(usize, usize)>,
    /// Every result comes back this many pictures late, in order.
    pub(super) latency: usize,
}

pub(super) struct Fake {
    cfg: Config,
    rig: Rig,
    formats: [Option<PixFormat>; 2],
    bufs: [Vec<Vec<u8>>; 2],
    queued: [VecDeque<(usize, u64)>; 2],
    done: [VecDeque<Dequeued>; 2],
    /// Results held back: (released once this picture is coded, result).
    later: Vec<(usize, Dequeued)>,
    streaming: [bool; 2],
    coded: usize,
    force: bool,
    repeat_headers: bool,
    broken: bool,
}

fn einval() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

impl Fake {
    pub(super) fn new(cfg: Config, rig: Rig) -> Self {
        Fake {
            cfg,
            rig,
            formats: [None, None],
            bufs: [Vec::new(), Vec::new()],
            queued: [VecDeque::new(), VecDeque::new()],
            done: [VecDeque::new(), VecDeque::new()],
            later: Vec::new(),
            streaming: [false, false],
            coded: 0,
            force: false,
            repeat_headers: false,
            broken: false,
        }
    }

    /// Every ioctl fails while the device is failing.
    fn check(&self) -> io::Result<()> {
        if self.rig.state().failing {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }

    fn process(&mut self) {
        let idle = {
            let s = self.rig.state();
            s.stalled || s.failing
        };
        if idle || !self.streaming.iter().all(|&s| s) {
            return;
        }
        // Room for a picture, and for its headers when they come apart.
        let need = if self.cfg.separate_headers || self.cfg.split {
            2
        } else {
            1
        };
        while !self.queued[0].is_empty() && self.queued[1].len() >= need {
            let Some((out, ts)) = self.queued[0].pop_front() else {
                return;
            };
            self.code_one(ts);
            self.done[0].push_back(Dequeued {
                index: out,
                bytesused: 0,
                data_offset: 0,
                flags: 0,
                timestamp_us: ts,
            });
        }
    }

    fn code_one(&mut self, ts: u64) {
        let n = self.coded;
        self.coded += 1;
        if !self.cfg.drop.contains(&n) {
            self.code(n, ts);
        }
        self.release(n);
    }

    fn code(&mut self, n: usize, ts: u64) {
        match self.cfg.fail {
            Some((at, Failure::BufferFlag)) if n >= at => {
                return self.emit(&[], sys::V4L2_BUF_FLAG_ERROR, ts, n);
            }
            Some((at, Failure::Epipe)) if n >= at => {
                self.broken = true;
                return;
            }
            _ => {}
        }
        // A forced keyframe is used up even by a first frame.
        let forced = std::mem::take(&mut self.force);
        let key = n == 0 || forced;
        let mut headers = Vec::new();
        if key && (n == 0 || self.repeat_headers) {
            headers.extend_from_slice(&SPS);
            headers.extend_from_slice(&PPS);
        }
        let slice = if key {
            [0, 0, 0, 1, 0x65, 0x88, n as u8]
        } else {
            [0, 0, 0, 1, 0x41, 0x9a, n as u8]
        };
        let flags = if key { sys::V4L2_BUF_FLAG_KEYFRAME } else { 0 };
        if self.cfg.split && !key {
            self.emit_split(&slice, ts, n);
        } else if self.cfg.separate_headers && !headers.is_empty() {
            self.emit(&headers, 0, ts, n);
            self.emit(&slice, flags, ts, n);
        } else {
            headers.extend_from_slice(&slice);
            self.emit(&headers, flags, ts, n);
        }
    }

    /// A picture bigger than a buffer: the first one filled to the brim
    /// with the slice padded out, the rest of it in the next.
    fn emit_split(&mut self, slice: &[u8], ts: u64, n: usize) {
        let Some(&(index, _)) = self.queued[1].front() else {
            return;
        };
        let mut first = slice[..5].to_vec();
        first.resize(self.bufs[1][index].len(), 0xff);
        self.emit(&first, 0, ts, n);
        self.emit(&slice[5..], 0, ts, n);
    }

    /// Picture `n`'s bytes in the next CAPTURE buffer, handed back now or
    /// held as scripted.
    fn emit(&mut self, bytes: &[u8], flags: u32, ts: u64, n: usize) {
        let Some((index, _)) = self.queued[1].pop_front() else {
            return;
        };
        self.bufs[1][index][..bytes.len()].copy_from_slice(bytes);
        let d = Dequeued {
            index,
            bytesused: bytes.len(),
            data_offset: 0,
            flags,
            timestamp_us: ts,
        };
        match self.held_until(n) {
            Some(at) => self.later.push((at, d)),
            None => self.done[1].push_back(d),
        }
    }

    /// After which picture picture `n`'s result comes back, if later than
    /// its own.
    fn held_until(&self, n: usize) -> Option<usize> {
        let by = self
            .cfg
            .delay
            .iter()
            .find(|(p, _)| *p == n)
            .map_or(self.cfg.latency, |&(_, by)| by);
        (by > 0).then_some(n + by)
    }

    /// Hands back the held results due once picture `n` is coded.
    fn release(&mut self, n: usize) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.later)
            .into_iter()
            .partition(|(at, _)| *at <= n);
        self.later = later;
        self.done[1].extend(due.into_iter().map(|(_, d)| d));
    }
}

impl Device for Fake {
    fn querycap(&mut self) -> io::Result<Caps> {
        self.check()?;
        Ok(Caps {
            driver: "fake".into(),
            card: "fake encoder".into(),
            caps: self
                .cfg
                .caps
                .unwrap_or(sys::V4L2_CAP_VIDEO_M2M_MPLANE | sys::V4L2_CAP_STREAMING),
        })
    }

    fn enum_formats(&mut self, q: Queue) -> io::Result<Vec<u32>> {
        self.check()?;
        Ok(match q {
            Queue::Output if self.cfg.no_yuv420 => vec![PIX_FMT_NV12],
            Queue::Output => vec![PIX_FMT_YUV420, PIX_FMT_NV12],
            Queue::Capture if self.cfg.no_h264 => vec![fourcc(b"MJPG")],
            Queue::Capture => vec![PIX_FMT_H264, fourcc(b"MJPG")],
        })
    }

    fn set_format(&mut self, q: Queue, want: &PixFormat) -> io::Result<PixFormat> {
        self.check()?;
        let got = match q {
            Queue::Capture => PixFormat {
                bytesperline: 0,
                planes: 1,
                ..*want
            },
            Queue::Output => {
                let bytesperline = want.bytesperline.max(want.width).next_multiple_of(64);
                let height = want.height.next_multiple_of(16);
                PixFormat {
                    bytesperline,
                    height,
                    sizeimage: bytesperline * height * 3 / 2,
                    planes: 1,
                    ..*want
                }
            }
        };
        self.formats[q.idx()] = Some(got);
        self.rig.state().log.formats.push((q, got));
        Ok(got)
    }

    fn set_frame_rate(&mut self, fps: u32) -> io::Result<()> {
        self.check()?;
        self.rig.state().log.frame_rate = Some(fps);
        Ok(())
    }

    fn has_control(&mut self, id: u32) -> io::Result<bool> {
        self.check()?;
        Ok(!self.cfg.missing.contains(&id))
    }

    fn set_control(&mut self, id: u32, value: i32) -> io::Result<()> {
        self.check()?;
        if self.cfg.refuse.contains(&id) {
            return Err(einval());
        }
        match id {
            sys::V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER => self.repeat_headers = value != 0,
            sys::V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME => self.force = true,
            _ => {}
        }
        self.rig.state().log.controls.push((id, value));
        Ok(())
    }

    fn request_buffers(&mut self, q: Queue, count: u32) -> io::Result<u32> {
        self.check()?;
        self.bufs[q.idx()].clear();
        Ok(count)
    }

    fn map_buffer(&mut self, q: Queue, index: usize) -> io::Result<usize> {
        self.check()?;
        let f = self.formats[q.idx()].ok_or_else(einval)?;
        assert_eq!(index, self.bufs[q.idx()].len(), "mapped in order");
        self.bufs[q.idx()].push(vec![0; f.sizeimage as usize]);
        Ok(f.sizeimage as usize)
    }

    fn buffer(&mut self, q: Queue, index: usize) -> Option<&mut [u8]> {
        self.bufs[q.idx()].get_mut(index).map(Vec::as_mut_slice)
    }

    fn queue_buffer(
        &mut self,
        q: Queue,
        index: usize,
        bytesused: usize,
        ts_us: u64,
    ) -> io::Result<()> {
        self.check()?;
        let buf = self.bufs[q.idx()].get(index).ok_or_else(einval)?;
        if q == Queue::Output {
            let bytes = buf[..bytesused].to_vec();
            self.rig.state().log.inputs.push(bytes);
        }
        self.queued[q.idx()].push_back((index, ts_us));
        self.process();
        Ok(())
    }

    fn dequeue_buffer(&mut self, q: Queue) -> io::Result<Option<Dequeued>> {
        self.check()?;
        if self.broken {
            return Err(io::Error::from_raw_os_error(libc::EPIPE));
        }
        self.process();
        Ok(self.done[q.idx()].pop_front())
    }

    fn stream(&mut self, q: Queue, on: bool) -> io::Result<()> {
        self.check()?;
        self.streaming[q.idx()] = on;
        if !on {
            self.rig.state().log.stream_offs.push(q);
        }
        self.process();
        Ok(())
    }

    /// Never sleeps: a poll that finds nothing moves the clock instead.
    fn wait(&mut self, q: Queue, timeout: Duration) -> io::Result<Readiness> {
        self.process();
        let ready = self.broken || !self.done[q.idx()].is_empty();
        let mut s = self.rig.state();
        if s.failing {
            return Ok(Readiness {
                ready: false,
                error: true,
            });
        }
        if !ready {
            s.now += timeout;
        }
        Ok(Readiness {
            ready,
            error: false,
        })
    }

    fn now(&self) -> Instant {
        self.rig.now()
    }
}

pub(super) fn settings(width: u32, height: u32) -> EncoderSettings {
    EncoderSettings {
        width,
        height,
        fps: 30,
        bitrate_kbps: 1500,
        threads: 1,
        slice_bytes: crate::encode::DEFAULT_SLICE_BYTES,
    }
}

/// An encoder on a fake device of `rig`.
pub(super) fn open_on(cfg: Config, s: EncoderSettings, rig: &Rig) -> Result<V4l2M2m, EncodeError> {
    let fake = Fake::new(cfg, rig.clone());
    V4l2M2m::with_device(Box::new(fake), Path::new("/dev/fake"), s)
}

pub(super) fn open_fake(cfg: Config, s: EncoderSettings) -> (Result<V4l2M2m, EncodeError>, Rig) {
    let rig = Rig::new();
    (open_on(cfg, s, &rig), rig)
}

pub(super) fn open_ok(cfg: Config, s: EncoderSettings) -> (V4l2M2m, Rig) {
    let (enc, rig) = open_fake(cfg, s);
    match enc {
        Ok(enc) => (enc, rig),
        Err(e) => panic!("open failed: {e}"),
    }
}

pub(super) fn open_err(cfg: Config, s: EncoderSettings) -> M2mError {
    match open_fake(cfg, s).0 {
        Ok(_) => panic!("open succeeded"),
        Err(EncodeError::V4l2M2m(e)) => e,
        Err(e) => panic!("not an M2mError: {e}"),
    }
}

/// A frame whose every byte tells where it came from, captured `n` frame
/// intervals after `t0`.
pub(super) fn frame(w: usize, h: usize, n: u64, t0: Instant) -> RawFrame {
    let mut f = RawFrame::black(w, h);
    for (i, b) in f.data.iter_mut().enumerate() {
        *b = (i as u64 * 7 + n) as u8;
    }
    f.captured = t0 + FRAME * n as u32;
    f.stamp_ms = 1_700_000_000_000 + 33 * n;
    f
}

pub(super) fn has_nal(data: &[u8], t: u8) -> bool {
    nal_types(data).any(|x| x == t)
}
