//! The device seam: the V4L2 calls the encoder makes, typed. `kernel.rs`
//! is the only code that talks to the kernel; the tests drive everything
//! above it against a driver in memory (`fake.rs`).

use std::io;
use std::time::{Duration, Instant};

use v4l2_sys_mit as sys;

/// `v4l2_fourcc()` is a function-like macro, which bindgen drops, so the
/// pixel formats are spelled out here as videodev2.h defines them.
pub(super) const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*code)
}
pub(super) const PIX_FMT_H264: u32 = fourcc(b"H264");
pub(super) const PIX_FMT_YUV420: u32 = fourcc(b"YU12");
pub(super) const PIX_FMT_NV12: u32 = fourcc(b"NV12");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Queue {
    /// Raw frames in.
    Output,
    /// Coded pictures out.
    Capture,
}

impl Queue {
    pub(super) fn buf_type(self) -> u32 {
        match self {
            Queue::Output => sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE,
            Queue::Capture => sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Queue::Output => "OUTPUT",
            Queue::Capture => "CAPTURE",
        }
    }

    pub(super) fn idx(self) -> usize {
        self as usize
    }
}

/// What QUERYCAP says, device caps preferred over the whole driver's.
#[derive(Debug, Clone)]
pub(super) struct Caps {
    pub(super) driver: String,
    pub(super) card: String,
    pub(super) caps: u32,
}

/// One single-plane multi-planar format (`v4l2_pix_format_mplane` with
/// `plane_fmt[0]`), as asked or as the driver set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PixFormat {
    pub(super) fourcc: u32,
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) bytesperline: u32,
    pub(super) sizeimage: u32,
    pub(super) planes: u8,
}

/// A buffer back from DQBUF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dequeued {
    pub(super) index: usize,
    pub(super) bytesused: usize,
    pub(super) data_offset: usize,
    pub(super) flags: u32,
    pub(super) timestamp_us: u64,
}

/// poll(2)'s answer: `ready` is the asked queue's, `error` POLLERR and kin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Readiness {
    pub(super) ready: bool,
    pub(super) error: bool,
}

/// The V4L2 calls the encoder makes, typed, and the clock it keeps time
/// by. The device owns its buffer mappings, so a fake needs no mmap and the
/// real one unmaps them when dropped.
pub(super) trait Device: Send {
    fn querycap(&mut self) -> io::Result<Caps>;
    fn enum_formats(&mut self, q: Queue) -> io::Result<Vec<u32>>;
    /// VIDIOC_S_FMT: returns the format the driver really set.
    fn set_format(&mut self, q: Queue, want: &PixFormat) -> io::Result<PixFormat>;
    /// VIDIOC_S_PARM on OUTPUT: 1/fps per frame.
    fn set_frame_rate(&mut self, fps: u32) -> io::Result<()>;
    /// VIDIOC_QUERYCTRL: whether the control exists and is enabled.
    fn has_control(&mut self, id: u32) -> io::Result<bool>;
    fn set_control(&mut self, id: u32, value: i32) -> io::Result<()>;
    /// VIDIOC_REQBUFS (MMAP): the count the driver granted.
    fn request_buffers(&mut self, q: Queue, count: u32) -> io::Result<u32>;
    /// VIDIOC_QUERYBUF and mmap of buffer `index` (asked in order from 0):
    /// the plane's length.
    fn map_buffer(&mut self, q: Queue, index: usize) -> io::Result<usize>;
    /// A mapped buffer's memory.
    fn buffer(&mut self, q: Queue, index: usize) -> Option<&mut [u8]>;
    fn queue_buffer(
        &mut self,
        q: Queue,
        index: usize,
        bytesused: usize,
        ts_us: u64,
    ) -> io::Result<()>;
    /// VIDIOC_DQBUF without blocking: `None` when nothing is done yet.
    fn dequeue_buffer(&mut self, q: Queue) -> io::Result<Option<Dequeued>>;
    fn stream(&mut self, q: Queue, on: bool) -> io::Result<()>;
    /// poll(2) until a buffer of `q` is done or `timeout` passes.
    fn wait(&mut self, q: Queue, timeout: Duration) -> io::Result<Readiness>;
    /// The time deadlines are kept by: the monotonic clock for the kernel's
    /// device, simulated time (moved by the test and by polls that time
    /// out) for the fake, so no test sleeps.
    fn now(&self) -> Instant;
}
