//! The Pi's hardware H.264: a V4L2 stateful memory-to-memory encoder
//! (bcm2835-codec at /dev/video11), multi-planar API only.
//!
//! In the kernel's naming (dev-encoder.rst) the OUTPUT queue takes what the
//! application writes, raw frames, and the CAPTURE queue gives back the
//! coded stream. Each [`VideoEncoder::encode`] copies one I420 frame into a
//! free OUTPUT buffer in the driver's layout, queues it, and waits for its
//! picture: one in, one out, the lowest latency and the simplest
//! bookkeeping. Any failure is a typed [`M2mError`]; the caller then falls
//! back to openh264.
//!
//! Required of the driver: H.264 out, YU12 or NV12 in, the constrained
//! baseline profile, a bitrate control (also changed live, without a
//! keyframe) and FORCE_KEY_FRAME (checked with QUERYCTRL at open: without
//! it a joining viewer would wait for the periodic IDR). Optional, warned
//! about once and skipped when refused: the level, the I-period, repeated
//! SPS/PPS (put back in front of IDRs from the last ones seen) and the
//! frame rate.
//!
//! Every ioctl, mmap and poll goes through the small `Device` trait:
//! `FdDevice` is the only code that talks to the kernel, and the tests
//! drive the negotiation and buffer logic against a fake driver.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use v4l2_sys_mit as sys;

use super::{EncodeError, EncoderSettings, PERIODIC_KEYFRAME_SECONDS, VideoEncoder, level};
use crate::frame::{EncodedFrame, RawFrame, VideoCodec};

/// Raw frames in flight: with one frame in and one out, two are plenty.
const OUTPUT_BUFFERS: u32 = 2;
/// Coded buffers: each is handed back as soon as its bytes are copied.
const CAPTURE_BUFFERS: u32 = 4;
/// The smallest coded buffer we accept: a 1080p IDR at a high bitrate can
/// pass 512 KiB (bcm2835-codec's own default for 720p and below).
const CODED_BUFFER_MIN: u32 = 512 * 1024;
/// How long one frame may take to come out before the encoder is declared
/// stuck (a frame takes a few ms on a Pi).
const PICTURE_TIMEOUT: Duration = Duration::from_secs(1);
/// ENUM_FMT stops at EINVAL; this bounds a driver that never says so.
const MAX_FORMATS: u32 = 64;

// --- videodev2.h pieces that v4l2-sys-mit (bindgen) cannot carry ---------

/// `v4l2_fourcc()` is a function-like macro, which bindgen drops, so the
/// pixel formats are spelled out here as videodev2.h defines them.
const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*code)
}
const PIX_FMT_H264: u32 = fourcc(b"H264");
const PIX_FMT_YUV420: u32 = fourcc(b"YU12");
const PIX_FMT_NV12: u32 = fourcc(b"NV12");

/// The `_IOC` direction bits and size width of the target's ioctl encoding
/// (asm-generic/ioctl.h; mips, powerpc and sparc use their own).
#[cfg(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "sparc64"
))]
mod ioc_bits {
    pub const WRITE: u32 = 4;
    pub const READ: u32 = 2;
    pub const SIZE_BITS: u32 = 13;
}
#[cfg(not(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "sparc64"
)))]
mod ioc_bits {
    pub const WRITE: u32 = 1;
    pub const READ: u32 = 2;
    pub const SIZE_BITS: u32 = 14;
}

/// `_IOC(dir, 'V', nr, size)`. The size is the Rust struct's, which bindgen
/// laid out from the same headers as C would on this target, so 32-bit
/// armhf (and its 64-bit time_t variant) gets its own numbers.
const fn vidioc(dir: u32, nr: u32, size: usize) -> u32 {
    assert!(size < (1 << ioc_bits::SIZE_BITS));
    (dir << (16 + ioc_bits::SIZE_BITS)) | ((size as u32) << 16) | ((b'V' as u32) << 8) | nr
}
const fn iowr<T>(nr: u32) -> u32 {
    vidioc(
        ioc_bits::READ | ioc_bits::WRITE,
        nr,
        std::mem::size_of::<T>(),
    )
}
const fn ior<T>(nr: u32) -> u32 {
    vidioc(ioc_bits::READ, nr, std::mem::size_of::<T>())
}
const fn iow<T>(nr: u32) -> u32 {
    vidioc(ioc_bits::WRITE, nr, std::mem::size_of::<T>())
}

const VIDIOC_QUERYCAP: u32 = ior::<sys::v4l2_capability>(0);
const VIDIOC_ENUM_FMT: u32 = iowr::<sys::v4l2_fmtdesc>(2);
const VIDIOC_S_FMT: u32 = iowr::<sys::v4l2_format>(5);
const VIDIOC_REQBUFS: u32 = iowr::<sys::v4l2_requestbuffers>(8);
const VIDIOC_QUERYBUF: u32 = iowr::<sys::v4l2_buffer>(9);
const VIDIOC_QBUF: u32 = iowr::<sys::v4l2_buffer>(15);
const VIDIOC_DQBUF: u32 = iowr::<sys::v4l2_buffer>(17);
const VIDIOC_STREAMON: u32 = iow::<libc::c_int>(18);
const VIDIOC_STREAMOFF: u32 = iow::<libc::c_int>(19);
const VIDIOC_S_PARM: u32 = iowr::<sys::v4l2_streamparm>(22);
const VIDIOC_S_CTRL: u32 = iowr::<sys::v4l2_control>(28);
const VIDIOC_QUERYCTRL: u32 = iowr::<sys::v4l2_queryctrl>(36);
const VIDIOC_S_EXT_CTRLS: u32 = iowr::<sys::v4l2_ext_controls>(72);

// --- errors ---------------------------------------------------------------

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
    #[error("no encoded picture within {0:?}")]
    Timeout(Duration),
    #[error("the driver returned a picture stamped {0} us, which matches no queued frame")]
    UnmatchedTimestamp(u64),
}

/// EPIPE (the CAPTURE queue has ended) and ENODEV (the device went away)
/// mean the encoder will never produce again; anything else is the call's.
fn ioctl_error(call: &'static str) -> impl Fn(io::Error) -> M2mError {
    move |source| match source.raw_os_error() {
        Some(libc::EPIPE | libc::ENODEV) => M2mError::Stopped { call, source },
        _ => M2mError::Ioctl { call, source },
    }
}

// --- the device seam --------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    /// Raw frames in.
    Output,
    /// Coded pictures out.
    Capture,
}

impl Queue {
    fn buf_type(self) -> u32 {
        match self {
            Queue::Output => sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE,
            Queue::Capture => sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Queue::Output => "OUTPUT",
            Queue::Capture => "CAPTURE",
        }
    }
    fn idx(self) -> usize {
        self as usize
    }
}

/// What QUERYCAP says, device caps preferred over the whole driver's.
#[derive(Debug, Clone)]
struct Caps {
    driver: String,
    card: String,
    caps: u32,
}

/// One single-plane multi-planar format (`v4l2_pix_format_mplane` with
/// `plane_fmt[0]`), as asked or as the driver set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PixFormat {
    fourcc: u32,
    width: u32,
    height: u32,
    bytesperline: u32,
    sizeimage: u32,
    planes: u8,
}

/// A buffer back from DQBUF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dequeued {
    index: usize,
    bytesused: usize,
    data_offset: usize,
    flags: u32,
    timestamp_us: u64,
}

/// poll(2)'s answer: `ready` is the asked queue's, `error` POLLERR and kin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Readiness {
    ready: bool,
    error: bool,
}

/// The V4L2 calls the encoder makes, typed. [`FdDevice`] is the kernel; the
/// tests have a fake driver. The device owns its buffer mappings, so a fake
/// needs no mmap and the real one unmaps them when dropped.
trait Device: Send {
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
}

// --- the real device ----------------------------------------------------------

/// videodev2.h structs, for which all-zero bytes are a valid value (plain C
/// data: integers, arrays, raw pointers and unions of those) and what the
/// kernel expects in every field the caller does not set.
///
/// # Safety
/// Only for types whose all-zero bit pattern is a valid value.
unsafe trait Zeroed: Sized {
    fn zeroed() -> Self {
        // SAFETY: the implementing type is plain C data (trait contract).
        unsafe { std::mem::zeroed() }
    }
}
// SAFETY: all bindgen'd C structs of integers, arrays, pointers and unions.
unsafe impl Zeroed for sys::v4l2_capability {}
unsafe impl Zeroed for sys::v4l2_fmtdesc {}
unsafe impl Zeroed for sys::v4l2_format {}
unsafe impl Zeroed for sys::v4l2_pix_format_mplane {}
unsafe impl Zeroed for sys::v4l2_streamparm {}
unsafe impl Zeroed for sys::v4l2_outputparm {}
unsafe impl Zeroed for sys::v4l2_queryctrl {}
unsafe impl Zeroed for sys::v4l2_ext_control {}
unsafe impl Zeroed for sys::v4l2_ext_controls {}
unsafe impl Zeroed for sys::v4l2_requestbuffers {}
unsafe impl Zeroed for sys::v4l2_buffer {}
unsafe impl Zeroed for sys::v4l2_plane {}

/// One mmap'ed buffer plane, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by one FdDevice and moves with it; nothing
// else holds the pointer.
unsafe impl Send for Mapping {}

impl Mapping {
    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: ptr..ptr+len is a live MAP_SHARED read/write mapping that
        // only this value hands out, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what mmap returned, once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The kernel device: an fd opened non-blocking (DQBUF answers EAGAIN and
/// poll does the waiting) plus the mappings of its buffers.
struct FdDevice {
    // Declared before `fd`: mappings are dropped (unmapped) before close.
    maps: [Vec<Mapping>; 2],
    fd: OwnedFd,
}

impl FdDevice {
    fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        Ok(FdDevice {
            maps: [Vec::new(), Vec::new()],
            fd: file.into(),
        })
    }

    fn ioctl<T>(&self, request: u32, arg: &mut T) -> io::Result<()> {
        loop {
            // SAFETY: `request` encodes size_of::<T>(), so the kernel reads
            // and writes at most that through a pointer valid for the call;
            // pointers inside T point at locals of the caller.
            let rc = unsafe {
                libc::ioctl(
                    self.fd.as_raw_fd(),
                    request as libc::Ioctl,
                    ptr::from_mut(arg),
                )
            };
            if rc != -1 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn mapping_len(&self, q: Queue, index: usize) -> io::Result<usize> {
        self.maps[q.idx()]
            .get(index)
            .map(|m| m.len)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
    }
}

/// A v4l2_buffer for MMAP I/O on `q` whose plane array is `planes`.
fn raw_buffer(q: Queue, index: usize, planes: &mut [sys::v4l2_plane]) -> sys::v4l2_buffer {
    let mut buf = sys::v4l2_buffer::zeroed();
    buf.index = index as u32;
    buf.type_ = q.buf_type();
    buf.memory = sys::v4l2_memory_V4L2_MEMORY_MMAP;
    buf.length = planes.len() as u32;
    buf.m.planes = planes.as_mut_ptr();
    buf
}

/// Timestamps travel as microseconds: bcm2835 keeps them in µs internally.
fn timeval(us: u64) -> sys::timeval {
    sys::timeval {
        tv_sec: (us / 1_000_000) as _,
        tv_usec: (us % 1_000_000) as _,
    }
}

fn micros(tv: sys::timeval) -> u64 {
    (tv.tv_sec as u64)
        .wrapping_mul(1_000_000)
        .wrapping_add(tv.tv_usec as u64)
}

fn raw_format(q: Queue, f: &PixFormat) -> sys::v4l2_format {
    let mut mp = sys::v4l2_pix_format_mplane::zeroed();
    mp.width = f.width;
    mp.height = f.height;
    mp.pixelformat = f.fourcc;
    mp.field = sys::v4l2_field_V4L2_FIELD_NONE;
    mp.num_planes = 1;
    mp.plane_fmt[0].bytesperline = f.bytesperline;
    mp.plane_fmt[0].sizeimage = f.sizeimage;
    let mut raw = sys::v4l2_format::zeroed();
    raw.type_ = q.buf_type();
    raw.fmt.pix_mp = mp;
    raw
}

fn format_of(raw: &sys::v4l2_format) -> PixFormat {
    // SAFETY: the format is of an _MPLANE buffer type, for which the kernel
    // fills `pix_mp`; any bit pattern is valid for its integer fields.
    let mp = unsafe { raw.fmt.pix_mp };
    PixFormat {
        fourcc: mp.pixelformat,
        width: mp.width,
        height: mp.height,
        bytesperline: mp.plane_fmt[0].bytesperline,
        sizeimage: mp.plane_fmt[0].sizeimage,
        planes: mp.num_planes,
    }
}

/// A NUL-terminated byte array from QUERYCAP as text.
fn c_text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn errno_is(e: &io::Error, errno: i32) -> bool {
    e.raw_os_error() == Some(errno)
}

impl Device for FdDevice {
    fn querycap(&mut self) -> io::Result<Caps> {
        let mut cap = sys::v4l2_capability::zeroed();
        self.ioctl(VIDIOC_QUERYCAP, &mut cap)?;
        let caps = if cap.capabilities & sys::V4L2_CAP_DEVICE_CAPS != 0 {
            cap.device_caps
        } else {
            cap.capabilities
        };
        Ok(Caps {
            driver: c_text(&cap.driver),
            card: c_text(&cap.card),
            caps,
        })
    }

    fn enum_formats(&mut self, q: Queue) -> io::Result<Vec<u32>> {
        let mut found = Vec::new();
        for index in 0..MAX_FORMATS {
            let mut desc = sys::v4l2_fmtdesc::zeroed();
            desc.index = index;
            desc.type_ = q.buf_type();
            match self.ioctl(VIDIOC_ENUM_FMT, &mut desc) {
                Ok(()) => found.push(desc.pixelformat),
                Err(e) if errno_is(&e, libc::EINVAL) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    fn set_format(&mut self, q: Queue, want: &PixFormat) -> io::Result<PixFormat> {
        let mut raw = raw_format(q, want);
        self.ioctl(VIDIOC_S_FMT, &mut raw)?;
        Ok(format_of(&raw))
    }

    fn set_frame_rate(&mut self, fps: u32) -> io::Result<()> {
        let mut out = sys::v4l2_outputparm::zeroed();
        out.timeperframe = sys::v4l2_fract {
            numerator: 1,
            denominator: fps,
        };
        let mut parm = sys::v4l2_streamparm::zeroed();
        parm.type_ = Queue::Output.buf_type();
        parm.parm.output = out;
        self.ioctl(VIDIOC_S_PARM, &mut parm)
    }

    fn has_control(&mut self, id: u32) -> io::Result<bool> {
        let mut query = sys::v4l2_queryctrl::zeroed();
        query.id = id;
        match self.ioctl(VIDIOC_QUERYCTRL, &mut query) {
            Ok(()) => Ok(query.flags & sys::V4L2_CTRL_FLAG_DISABLED == 0),
            Err(e) if errno_is(&e, libc::EINVAL) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// S_EXT_CTRLS in the codec class; S_CTRL for a driver without it.
    fn set_control(&mut self, id: u32, value: i32) -> io::Result<()> {
        let mut ctrl = sys::v4l2_ext_control::zeroed();
        ctrl.id = id;
        ctrl.__bindgen_anon_1.value = value;
        let mut ctrls = sys::v4l2_ext_controls::zeroed();
        ctrls.__bindgen_anon_1.ctrl_class = sys::V4L2_CTRL_CLASS_MPEG;
        ctrls.count = 1;
        ctrls.controls = ptr::from_mut(&mut ctrl);
        match self.ioctl(VIDIOC_S_EXT_CTRLS, &mut ctrls) {
            Err(e) if errno_is(&e, libc::ENOTTY) => {
                self.ioctl(VIDIOC_S_CTRL, &mut sys::v4l2_control { id, value })
            }
            other => other,
        }
    }

    fn request_buffers(&mut self, q: Queue, count: u32) -> io::Result<u32> {
        self.maps[q.idx()].clear();
        let mut req = sys::v4l2_requestbuffers::zeroed();
        req.count = count;
        req.type_ = q.buf_type();
        req.memory = sys::v4l2_memory_V4L2_MEMORY_MMAP;
        self.ioctl(VIDIOC_REQBUFS, &mut req)?;
        Ok(req.count)
    }

    fn map_buffer(&mut self, q: Queue, index: usize) -> io::Result<usize> {
        if index != self.maps[q.idx()].len() {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let mut planes = [sys::v4l2_plane::zeroed(); sys::VIDEO_MAX_PLANES as usize];
        let mut buf = raw_buffer(q, index, &mut planes);
        self.ioctl(VIDIOC_QUERYBUF, &mut buf)?;
        if buf.length != 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} buffer has {} planes, expected 1", q.name(), buf.length),
            ));
        }
        let len = planes[0].length as usize;
        // SAFETY: QUERYBUF of an MMAP buffer fills `mem_offset`.
        let offset = unsafe { planes[0].m.mem_offset };
        // SAFETY: a fresh shared mapping of the driver's buffer at the
        // offset it gave; nothing aliases it until it is unmapped.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(addr.cast()).ok_or_else(io::Error::last_os_error)?;
        self.maps[q.idx()].push(Mapping { ptr, len });
        Ok(len)
    }

    fn buffer(&mut self, q: Queue, index: usize) -> Option<&mut [u8]> {
        self.maps[q.idx()].get_mut(index).map(Mapping::bytes)
    }

    fn queue_buffer(
        &mut self,
        q: Queue,
        index: usize,
        bytesused: usize,
        ts_us: u64,
    ) -> io::Result<()> {
        let mut planes = [sys::v4l2_plane::zeroed(); 1];
        planes[0].bytesused = bytesused as u32;
        planes[0].length = self.mapping_len(q, index)? as u32;
        let mut buf = raw_buffer(q, index, &mut planes);
        buf.field = sys::v4l2_field_V4L2_FIELD_NONE;
        buf.timestamp = timeval(ts_us);
        self.ioctl(VIDIOC_QBUF, &mut buf)
    }

    fn dequeue_buffer(&mut self, q: Queue) -> io::Result<Option<Dequeued>> {
        let mut planes = [sys::v4l2_plane::zeroed(); sys::VIDEO_MAX_PLANES as usize];
        let mut buf = raw_buffer(q, 0, &mut planes);
        match self.ioctl(VIDIOC_DQBUF, &mut buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        Ok(Some(Dequeued {
            index: buf.index as usize,
            bytesused: planes[0].bytesused as usize,
            data_offset: planes[0].data_offset as usize,
            flags: buf.flags,
            timestamp_us: micros(buf.timestamp),
        }))
    }

    fn stream(&mut self, q: Queue, on: bool) -> io::Result<()> {
        let mut buf_type = q.buf_type() as libc::c_int;
        let request = if on {
            VIDIOC_STREAMON
        } else {
            VIDIOC_STREAMOFF
        };
        self.ioctl(request, &mut buf_type)
    }

    fn wait(&mut self, q: Queue, timeout: Duration) -> io::Result<Readiness> {
        // An m2m fd is readable when a CAPTURE buffer is done and writable
        // when an OUTPUT buffer is.
        let events = match q {
            Queue::Output => libc::POLLOUT,
            Queue::Capture => libc::POLLIN,
        };
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events,
            revents: 0,
        };
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
        loop {
            // SAFETY: one valid pollfd for the duration of the call.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc >= 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(Readiness {
            ready: pfd.revents & events != 0,
            error: pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0,
        })
    }
}

// --- formats and layout -----------------------------------------------------

fn fourcc_name(code: u32) -> String {
    code.to_le_bytes().iter().map(|&b| b as char).collect()
}

fn fourcc_list(codes: &[u32]) -> String {
    if codes.is_empty() {
        return "none".into();
    }
    codes
        .iter()
        .map(|&c| fourcc_name(c))
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe(f: &PixFormat) -> String {
    format!(
        "{} {}x{} ({} plane(s), bytesperline {}, sizeimage {})",
        fourcc_name(f.fourcc),
        f.width,
        f.height,
        f.planes,
        f.bytesperline,
        f.sizeimage
    )
}

/// Where the driver wants the raw frame's bytes in one OUTPUT buffer: the
/// luma rows at its stride over its (possibly aligned) height, then the
/// chroma where its single-plane layout puts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    fourcc: u32,
    stride: usize,
    rows: usize,
}

impl Layout {
    /// Checks what S_FMT returned: our format, our width, at least our
    /// height, one plane, a stride that holds a row.
    fn new(asked: &PixFormat, got: &PixFormat) -> Result<Self, M2mError> {
        let fits = got.fourcc == asked.fourcc
            && got.width == asked.width
            && got.height >= asked.height
            && got.planes == 1
            && got.bytesperline >= asked.width
            && (got.fourcc != PIX_FMT_YUV420 || got.bytesperline.is_multiple_of(2));
        if !fits {
            return Err(M2mError::FormatRefused {
                queue: Queue::Output.name(),
                asked: describe(asked),
                got: describe(got),
            });
        }
        Ok(Layout {
            fourcc: got.fourcc,
            stride: got.bytesperline as usize,
            rows: got.height as usize,
        })
    }

    fn luma_size(&self) -> usize {
        self.stride * self.rows
    }

    /// One chroma plane of YU12: half the stride, half the rows.
    fn chroma_plane(&self) -> usize {
        (self.stride / 2) * (self.rows / 2)
    }

    /// Bytes of one frame in this layout.
    fn size(&self) -> usize {
        match self.fourcc {
            PIX_FMT_NV12 => self.luma_size() + self.stride * (self.rows / 2),
            _ => self.luma_size() + 2 * self.chroma_plane(),
        }
    }

    /// Copies an I420 frame row by row into `dst`; returns the bytes used.
    fn copy(&self, frame: &RawFrame, dst: &mut [u8]) -> Result<usize, M2mError> {
        let size = self.size();
        if dst.len() < size {
            return Err(M2mError::BufferTooSmall {
                queue: Queue::Output.name(),
                have: dst.len(),
                need: size,
            });
        }
        let (y, u, v) = frame.planes();
        let (w, h) = (frame.width, frame.height);
        let (luma, chroma) = dst[..size].split_at_mut(self.luma_size());
        copy_plane(y, w, h, luma, self.stride);
        if self.fourcc == PIX_FMT_NV12 {
            interleave(u, v, w / 2, h / 2, chroma, self.stride);
        } else {
            let (cu, cv) = chroma.split_at_mut(self.chroma_plane());
            copy_plane(u, w / 2, h / 2, cu, self.stride / 2);
            copy_plane(v, w / 2, h / 2, cv, self.stride / 2);
        }
        Ok(size)
    }
}

/// `rows` rows of `width` bytes from a tight plane into one of `stride`.
fn copy_plane(src: &[u8], width: usize, rows: usize, dst: &mut [u8], stride: usize) {
    for (s, d) in src
        .chunks_exact(width)
        .take(rows)
        .zip(dst.chunks_mut(stride))
    {
        d[..width].copy_from_slice(s);
    }
}

/// NV12's chroma: U and V rows interleaved byte by byte at `stride`.
fn interleave(u: &[u8], v: &[u8], width: usize, rows: usize, dst: &mut [u8], stride: usize) {
    let rows_in = u.chunks_exact(width).zip(v.chunks_exact(width)).take(rows);
    for ((ur, vr), d) in rows_in.zip(dst.chunks_mut(stride)) {
        for (pair, (&a, &b)) in d[..2 * width].chunks_exact_mut(2).zip(ur.iter().zip(vr)) {
            pair[0] = a;
            pair[1] = b;
        }
    }
}

// --- controls -------------------------------------------------------------

/// One codec control set at open. A required one the driver refuses fails
/// the open; an optional one is warned about once and skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Control {
    name: &'static str,
    id: u32,
    value: i32,
    required: bool,
}

/// The V4L2 menu value of an H.264 level_idc.
fn v4l2_level(level_idc: u8) -> u32 {
    match level_idc {
        10 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_1_0,
        11 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_1_1,
        12 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_1_2,
        13 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_1_3,
        20 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_2_0,
        21 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_2_1,
        22 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_2_2,
        30 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_3_0,
        31 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_3_1,
        32 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_3_2,
        40 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_4_0,
        41 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_4_1,
        42 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_4_2,
        50 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_5_0,
        51 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_5_1,
        _ => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_5_2,
    }
}

fn bitrate_bps(kbps: u32) -> i32 {
    kbps.saturating_mul(1000).min(i32::MAX as u32) as i32
}

/// The controls set at open. Profile and bitrate are required: the answer
/// promises constrained baseline, and without a bitrate the congestion
/// control has no handle. Level, I-period and repeated headers are
/// optional: the probe reads the level from the SPS the encoder really
/// writes, a driver default period still gives keyframes, and missing
/// headers on an IDR are put back from the last SPS/PPS seen.
fn controls(s: &EncoderSettings, level_idc: u8) -> [Control; 5] {
    let period = s.fps.max(1).saturating_mul(PERIODIC_KEYFRAME_SECONDS);
    [
        Control {
            name: "H264_PROFILE",
            id: sys::V4L2_CID_MPEG_VIDEO_H264_PROFILE,
            value:
                sys::v4l2_mpeg_video_h264_profile_V4L2_MPEG_VIDEO_H264_PROFILE_CONSTRAINED_BASELINE
                    as i32,
            required: true,
        },
        Control {
            name: "H264_LEVEL",
            id: sys::V4L2_CID_MPEG_VIDEO_H264_LEVEL,
            value: v4l2_level(level_idc) as i32,
            required: false,
        },
        Control {
            name: "BITRATE",
            id: sys::V4L2_CID_MPEG_VIDEO_BITRATE,
            value: bitrate_bps(s.bitrate_kbps),
            required: true,
        },
        Control {
            name: "H264_I_PERIOD",
            id: sys::V4L2_CID_MPEG_VIDEO_H264_I_PERIOD,
            value: period.min(i32::MAX as u32) as i32,
            required: false,
        },
        Control {
            name: "REPEAT_SEQ_HEADER",
            id: sys::V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER,
            value: 1,
            required: false,
        },
    ]
}

/// Warns once per process about an optional setting the driver refused:
/// the encoder is reopened each time viewers come back.
fn warn_once(key: u32, what: &str, err: &io::Error) {
    static WARNED: Mutex<Vec<u32>> = Mutex::new(Vec::new());
    let first = WARNED.lock().map_or(true, |mut seen| {
        let first = !seen.contains(&key);
        if first {
            seen.push(key);
        }
        first
    });
    if first {
        tracing::warn!("v4l2m2m: the driver refused {what} ({err}); going on without it");
    }
}

/// An answer that means "this driver does not do that" rather than "broken".
fn is_refusal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOTTY | libc::ERANGE)
    )
}

fn apply_controls(dev: &mut dyn Device, list: &[Control]) -> Result<(), M2mError> {
    for c in list {
        match dev.set_control(c.id, c.value) {
            Ok(()) => {}
            Err(e) if !c.required && is_refusal(&e) => warn_once(c.id, c.name, &e),
            Err(source) => {
                return Err(M2mError::ControlRefused {
                    control: c.name,
                    value: c.value,
                    source,
                });
            }
        }
    }
    Ok(())
}

// --- negotiation ----------------------------------------------------------

fn check_caps(dev: &mut dyn Device) -> Result<(), M2mError> {
    let caps = dev.querycap().map_err(ioctl_error("VIDIOC_QUERYCAP"))?;
    let want = sys::V4L2_CAP_VIDEO_M2M_MPLANE | sys::V4L2_CAP_STREAMING;
    if caps.caps & want != want {
        return Err(M2mError::NotAnEncoder {
            driver: caps.driver,
            card: caps.card,
            caps: caps.caps,
        });
    }
    Ok(())
}

/// The coded format first, as dev-encoder.rst orders it; bcm2835 also takes
/// the coded size from it.
fn negotiate_capture(dev: &mut dyn Device, s: &EncoderSettings) -> Result<(), M2mError> {
    let offered = dev
        .enum_formats(Queue::Capture)
        .map_err(ioctl_error("VIDIOC_ENUM_FMT(CAPTURE)"))?;
    if !offered.contains(&PIX_FMT_H264) {
        return Err(M2mError::NoH264 {
            offered: fourcc_list(&offered),
        });
    }
    let asked = PixFormat {
        fourcc: PIX_FMT_H264,
        width: s.width,
        height: s.height,
        bytesperline: 0,
        sizeimage: CODED_BUFFER_MIN.max(s.width.saturating_mul(s.height) / 2),
        planes: 1,
    };
    let got = dev
        .set_format(Queue::Capture, &asked)
        .map_err(ioctl_error("VIDIOC_S_FMT(CAPTURE)"))?;
    if got.fourcc != PIX_FMT_H264 || got.planes != 1 {
        return Err(M2mError::FormatRefused {
            queue: Queue::Capture.name(),
            asked: describe(&asked),
            got: describe(&got),
        });
    }
    if got.sizeimage < CODED_BUFFER_MIN {
        return Err(M2mError::BufferTooSmall {
            queue: Queue::Capture.name(),
            have: got.sizeimage as usize,
            need: CODED_BUFFER_MIN as usize,
        });
    }
    Ok(())
}

/// YU12 (our own layout, a plain copy) when offered, else NV12.
fn negotiate_output(dev: &mut dyn Device, s: &EncoderSettings) -> Result<Layout, M2mError> {
    let offered = dev
        .enum_formats(Queue::Output)
        .map_err(ioctl_error("VIDIOC_ENUM_FMT(OUTPUT)"))?;
    let fourcc = [PIX_FMT_YUV420, PIX_FMT_NV12]
        .into_iter()
        .find(|f| offered.contains(f))
        .ok_or_else(|| M2mError::InputFormatRefused {
            offered: fourcc_list(&offered),
        })?;
    let asked = PixFormat {
        fourcc,
        width: s.width,
        height: s.height,
        bytesperline: s.width,
        sizeimage: 0,
        planes: 1,
    };
    let got = dev
        .set_format(Queue::Output, &asked)
        .map_err(ioctl_error("VIDIOC_S_FMT(OUTPUT)"))?;
    Layout::new(&asked, &got)
}

/// REQBUFS and mmap of every buffer; each must hold `need` bytes.
fn setup_queue(dev: &mut dyn Device, q: Queue, count: u32, need: usize) -> Result<usize, M2mError> {
    let call = match q {
        Queue::Output => "VIDIOC_REQBUFS(OUTPUT)",
        Queue::Capture => "VIDIOC_REQBUFS(CAPTURE)",
    };
    let granted = dev.request_buffers(q, count).map_err(ioctl_error(call))? as usize;
    if granted == 0 {
        return Err(M2mError::NoBuffers { queue: q.name() });
    }
    for index in 0..granted {
        let len = dev
            .map_buffer(q, index)
            .map_err(ioctl_error("VIDIOC_QUERYBUF/mmap"))?;
        if len < need {
            return Err(M2mError::BufferTooSmall {
                queue: q.name(),
                have: len,
                need,
            });
        }
    }
    Ok(granted)
}

/// Caps, coded then raw format, frame rate and controls: everything before
/// the buffers. Returns where a frame's bytes go.
fn configure(d: &mut dyn Device, s: &EncoderSettings) -> Result<Layout, EncodeError> {
    let level_idc = level::level_idc(s.width, s.height, s.fps)
        .ok_or(EncodeError::NoLevel(s.width, s.height, s.fps))?;
    let even = |n: u32| n > 0 && n.is_multiple_of(2);
    if !even(s.width) || !even(s.height) {
        return Err(M2mError::BadSize {
            width: s.width,
            height: s.height,
        }
        .into());
    }
    check_caps(d)?;
    negotiate_capture(d, s)?;
    let layout = negotiate_output(d, s)?;
    if let Err(e) = d.set_frame_rate(s.fps.max(1)) {
        warn_once(0, "the frame rate (VIDIOC_S_PARM)", &e);
    }
    apply_controls(d, &controls(s, level_idc))?;
    // Without it a joining viewer waits for the periodic IDR.
    require_control(
        d,
        sys::V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME,
        "FORCE_KEY_FRAME",
    )?;
    Ok(layout)
}

/// A control used later, checked now without side effects (QUERYCTRL).
fn require_control(d: &mut dyn Device, id: u32, control: &'static str) -> Result<(), M2mError> {
    if d.has_control(id).map_err(ioctl_error("VIDIOC_QUERYCTRL"))? {
        Ok(())
    } else {
        Err(M2mError::MissingControl { control })
    }
}

// --- the encoder ----------------------------------------------------------

/// A queued frame's capture times, found again by the timestamp its
/// picture carries.
#[derive(Debug, Clone, Copy)]
struct Pending {
    ts_us: u64,
    captured: Instant,
    stamp_ms: u64,
}

/// OUTPUT timestamps: microseconds of capture time since the first frame,
/// strictly increasing. They key the matching of pictures to frames, and
/// being real time they also suit a driver whose rate control reads them.
#[derive(Debug, Default)]
struct Clock {
    base: Option<Instant>,
    last_us: u64,
}

impl Clock {
    fn stamp(&mut self, captured: Instant) -> u64 {
        let base = *self.base.get_or_insert(captured);
        let since = captured.saturating_duration_since(base).as_micros();
        let us = u64::try_from(since).unwrap_or(u64::MAX - 1);
        self.last_us = us.max(self.last_us).saturating_add(1);
        self.last_us
    }
}

/// NAL unit types in an Annex-B access unit.
fn nal_types(data: &[u8]) -> impl Iterator<Item = u8> + '_ {
    level::nal_units(data).filter_map(|n| n.first().map(|b| b & 0x1f))
}

/// The SPS and PPS of an access unit, with start codes, if it has an SPS.
fn parameter_sets(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for nal in level::nal_units(data) {
        if matches!(nal.first().map(|b| b & 0x1f), Some(7 | 8)) {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(nal);
        }
    }
    nal_types(data).any(|t| t == 7).then_some(out)
}

pub struct V4l2M2m {
    dev: Box<dyn Device>,
    path: PathBuf,
    settings: EncoderSettings,
    layout: Layout,
    /// Which OUTPUT buffers the driver holds.
    output_busy: Vec<bool>,
    captures: usize,
    clock: Clock,
    pending: VecDeque<Pending>,
    /// CAPTURE bytes of the picture under way: parameter sets that came
    /// alone, or a frame the driver split over full buffers.
    partial: Vec<u8>,
    /// The last SPS and PPS seen, for an IDR that comes without them.
    headers: Vec<u8>,
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
    fn with_device(
        mut dev: Box<dyn Device>,
        path: &Path,
        settings: EncoderSettings,
    ) -> Result<Self, EncodeError> {
        let layout = configure(dev.as_mut(), &settings)?;
        let d = dev.as_mut();
        let outputs = setup_queue(d, Queue::Output, OUTPUT_BUFFERS, layout.size())?;
        let captures = setup_queue(
            d,
            Queue::Capture,
            CAPTURE_BUFFERS,
            CODED_BUFFER_MIN as usize,
        )?;
        let mut enc = V4l2M2m {
            dev,
            path: path.to_path_buf(),
            settings,
            layout,
            output_busy: vec![false; outputs],
            captures,
            clock: Clock::default(),
            pending: VecDeque::new(),
            partial: Vec::new(),
            headers: Vec::new(),
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

    fn encode_frame(&mut self, frame: &RawFrame, keyframe: bool) -> Result<EncodedFrame, M2mError> {
        let deadline = Instant::now() + PICTURE_TIMEOUT;
        if keyframe {
            self.dev
                .set_control(sys::V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME, 1)
                .map_err(ioctl_error("VIDIOC_S_EXT_CTRLS(FORCE_KEY_FRAME)"))?;
        }
        let index = self.free_output(deadline)?;
        let layout = self.layout;
        let dst = self
            .dev
            .buffer(Queue::Output, index)
            .ok_or(M2mError::UnknownBuffer {
                queue: Queue::Output.name(),
                index,
            })?;
        let used = layout.copy(frame, dst)?;
        let ts_us = self.clock.stamp(frame.captured);
        self.dev
            .queue_buffer(Queue::Output, index, used, ts_us)
            .map_err(ioctl_error("VIDIOC_QBUF(OUTPUT)"))?;
        self.output_busy[index] = true;
        self.pending.push_back(Pending {
            ts_us,
            captured: frame.captured,
            stamp_ms: frame.stamp_ms,
        });
        self.next_picture(deadline)
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

    fn free_output(&mut self, deadline: Instant) -> Result<usize, M2mError> {
        loop {
            self.reclaim_outputs()?;
            if let Some(index) = self.output_busy.iter().position(|busy| !busy) {
                return Ok(index);
            }
            self.wait(Queue::Output, deadline)?;
        }
    }

    /// Waits for the next complete picture, reclaiming OUTPUT buffers on
    /// the way.
    fn next_picture(&mut self, deadline: Instant) -> Result<EncodedFrame, M2mError> {
        loop {
            self.reclaim_outputs()?;
            let done = self
                .dev
                .dequeue_buffer(Queue::Capture)
                .map_err(ioctl_error("VIDIOC_DQBUF(CAPTURE)"))?;
            match done {
                Some(d) => {
                    if let Some(picture) = self.take_capture(d)? {
                        return Ok(picture);
                    }
                }
                None => self.wait(Queue::Capture, deadline)?,
            }
        }
    }

    /// poll until `q` has a buffer done; a poll that times out is final.
    fn wait(&mut self, q: Queue, deadline: Instant) -> Result<(), M2mError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(M2mError::Timeout(PICTURE_TIMEOUT));
        }
        let r = self.dev.wait(q, left).map_err(ioctl_error("poll"))?;
        match r {
            Readiness { ready: true, .. } => Ok(()),
            Readiness { error: true, .. } => Err(M2mError::PollError),
            _ => Err(M2mError::Timeout(PICTURE_TIMEOUT)),
        }
    }

    /// Copies a CAPTURE buffer's bytes, gives the buffer back, and returns
    /// the picture once it is whole (it has a slice and the buffer was not
    /// filled to the brim).
    fn take_capture(&mut self, d: Dequeued) -> Result<Option<EncodedFrame>, M2mError> {
        let queue = Queue::Capture.name();
        if d.flags & sys::V4L2_BUF_FLAG_ERROR != 0 {
            return Err(M2mError::BufferFailed {
                queue,
                index: d.index,
            });
        }
        let data = self
            .dev
            .buffer(Queue::Capture, d.index)
            .ok_or(M2mError::UnknownBuffer {
                queue,
                index: d.index,
            })?;
        let end = d.bytesused.min(data.len());
        let full = d.bytesused >= data.len();
        self.partial
            .extend_from_slice(&data[d.data_offset.min(end)..end]);
        self.dev
            .queue_buffer(Queue::Capture, d.index, 0, 0)
            .map_err(ioctl_error("VIDIOC_QBUF(CAPTURE)"))?;
        let has_slice = nal_types(&self.partial).any(|t| (1..=5).contains(&t));
        if full || !has_slice {
            return Ok(None);
        }
        let data = std::mem::take(&mut self.partial);
        self.finish_picture(data, d.flags, d.timestamp_us).map(Some)
    }

    /// The picture with its frame's capture times, and SPS/PPS put in front
    /// of an IDR that lacks them.
    fn finish_picture(
        &mut self,
        mut data: Vec<u8>,
        flags: u32,
        ts_us: u64,
    ) -> Result<EncodedFrame, M2mError> {
        let frame = self.match_pending(ts_us)?;
        let keyframe = flags & sys::V4L2_BUF_FLAG_KEYFRAME != 0 || nal_types(&data).any(|t| t == 5);
        match parameter_sets(&data) {
            Some(sets) => self.headers = sets,
            None if keyframe && !self.headers.is_empty() => {
                data.splice(0..0, self.headers.iter().copied());
            }
            None => {}
        }
        Ok(EncodedFrame {
            codec: VideoCodec::H264,
            droppable: crate::frame::h264_unreferenced(&data),
            data: Arc::from(data),
            keyframe,
            width: self.settings.width as usize,
            height: self.settings.height as usize,
            captured: frame.captured,
            stamp_ms: frame.stamp_ms,
            seq: 0,
        })
    }

    /// The queued frame this timestamp belongs to; older ones the driver
    /// dropped are forgotten.
    fn match_pending(&mut self, ts_us: u64) -> Result<Pending, M2mError> {
        while let Some(p) = self.pending.front().copied() {
            if p.ts_us > ts_us {
                break;
            }
            self.pending.pop_front();
            if p.ts_us == ts_us {
                return Ok(p);
            }
        }
        Err(M2mError::UnmatchedTimestamp(ts_us))
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
        super::check_size(&self.settings, frame)?;
        Ok(Some(self.encode_frame(frame, keyframe)?))
    }

    /// Live, through the bitrate control alone: no keyframe.
    fn set_bitrate(&mut self, kbps: u32) -> Result<(), EncodeError> {
        let value = bitrate_bps(kbps);
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

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: [u8; 8] = [0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f];
    const PPS: [u8; 6] = [0, 0, 0, 1, 0x68, 0xce];

    /// What the fake driver saw, kept after the encoder owns the fake.
    #[derive(Debug, Default)]
    struct Log {
        formats: Vec<(Queue, PixFormat)>,
        controls: Vec<(u32, i32)>,
        frame_rate: Option<u32>,
        /// Each OUTPUT buffer's bytes as queued.
        inputs: Vec<Vec<u8>>,
        stream_offs: Vec<Queue>,
    }

    #[derive(Debug, Clone, Copy)]
    enum Failure {
        /// The picture comes back with V4L2_BUF_FLAG_ERROR.
        BufferFlag,
        /// DQBUF answers EPIPE from then on.
        Epipe,
    }

    #[derive(Debug, Clone, Default)]
    struct Config {
        caps: Option<u32>,
        no_h264: bool,
        no_yuv420: bool,
        /// Controls answered with EINVAL.
        refuse: Vec<u32>,
        /// Controls QUERYCTRL does not know.
        missing: Vec<u32>,
        /// From this frame (0-based) on, fail so.
        fail: Option<(usize, Failure)>,
        /// Takes frames and never codes them.
        stall: bool,
        /// Sends an IDR's SPS/PPS in a buffer of their own.
        separate_headers: bool,
        /// Splits each P picture over a full buffer and the next one.
        split: bool,
    }

    /// A stateful encoder driver in memory: aligns strides to 64 and
    /// heights to 16, codes each OUTPUT buffer into fake H.264 in the next
    /// CAPTURE buffer with the same timestamp.
    struct Fake {
        cfg: Config,
        log: Arc<Mutex<Log>>,
        formats: [Option<PixFormat>; 2],
        bufs: [Vec<Vec<u8>>; 2],
        queued: [VecDeque<(usize, u64)>; 2],
        done: [VecDeque<Dequeued>; 2],
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
        fn new(cfg: Config) -> (Self, Arc<Mutex<Log>>) {
            let log = Arc::new(Mutex::new(Log::default()));
            let fake = Fake {
                cfg,
                log: log.clone(),
                formats: [None, None],
                bufs: [Vec::new(), Vec::new()],
                queued: [VecDeque::new(), VecDeque::new()],
                done: [VecDeque::new(), VecDeque::new()],
                streaming: [false, false],
                coded: 0,
                force: false,
                repeat_headers: false,
                broken: false,
            };
            (fake, log)
        }

        fn process(&mut self) {
            if self.cfg.stall || !self.streaming.iter().all(|&s| s) {
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
            match self.cfg.fail {
                Some((at, Failure::BufferFlag)) if n >= at => {
                    return self.emit(&[], sys::V4L2_BUF_FLAG_ERROR, ts);
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
                self.emit_split(&slice, ts);
            } else if self.cfg.separate_headers && !headers.is_empty() {
                self.emit(&headers, 0, ts);
                self.emit(&slice, flags, ts);
            } else {
                headers.extend_from_slice(&slice);
                self.emit(&headers, flags, ts);
            }
        }

        /// A picture bigger than a buffer: the first one filled to the brim
        /// with the slice padded out, the rest of it in the next.
        fn emit_split(&mut self, slice: &[u8], ts: u64) {
            let Some(&(index, _)) = self.queued[1].front() else {
                return;
            };
            let mut first = slice[..5].to_vec();
            first.resize(self.bufs[1][index].len(), 0xff);
            self.emit(&first, 0, ts);
            self.emit(&slice[5..], 0, ts);
        }

        fn emit(&mut self, bytes: &[u8], flags: u32, ts: u64) {
            let Some((index, _)) = self.queued[1].pop_front() else {
                return;
            };
            self.bufs[1][index][..bytes.len()].copy_from_slice(bytes);
            self.done[1].push_back(Dequeued {
                index,
                bytesused: bytes.len(),
                data_offset: 0,
                flags,
                timestamp_us: ts,
            });
        }
    }

    impl Device for Fake {
        fn querycap(&mut self) -> io::Result<Caps> {
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
            Ok(match q {
                Queue::Output if self.cfg.no_yuv420 => vec![PIX_FMT_NV12],
                Queue::Output => vec![PIX_FMT_YUV420, PIX_FMT_NV12],
                Queue::Capture if self.cfg.no_h264 => vec![fourcc(b"MJPG")],
                Queue::Capture => vec![PIX_FMT_H264, fourcc(b"MJPG")],
            })
        }

        fn set_format(&mut self, q: Queue, want: &PixFormat) -> io::Result<PixFormat> {
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
            self.log.lock().unwrap().formats.push((q, got));
            Ok(got)
        }

        fn set_frame_rate(&mut self, fps: u32) -> io::Result<()> {
            self.log.lock().unwrap().frame_rate = Some(fps);
            Ok(())
        }

        fn has_control(&mut self, id: u32) -> io::Result<bool> {
            Ok(!self.cfg.missing.contains(&id))
        }

        fn set_control(&mut self, id: u32, value: i32) -> io::Result<()> {
            if self.cfg.refuse.contains(&id) {
                return Err(einval());
            }
            match id {
                sys::V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER => self.repeat_headers = value != 0,
                sys::V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME => self.force = true,
                _ => {}
            }
            self.log.lock().unwrap().controls.push((id, value));
            Ok(())
        }

        fn request_buffers(&mut self, q: Queue, count: u32) -> io::Result<u32> {
            self.bufs[q.idx()].clear();
            Ok(count)
        }

        fn map_buffer(&mut self, q: Queue, index: usize) -> io::Result<usize> {
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
            let buf = self.bufs[q.idx()].get(index).ok_or_else(einval)?;
            if q == Queue::Output {
                let bytes = buf[..bytesused].to_vec();
                self.log.lock().unwrap().inputs.push(bytes);
            }
            self.queued[q.idx()].push_back((index, ts_us));
            self.process();
            Ok(())
        }

        fn dequeue_buffer(&mut self, q: Queue) -> io::Result<Option<Dequeued>> {
            if self.broken {
                return Err(io::Error::from_raw_os_error(libc::EPIPE));
            }
            self.process();
            Ok(self.done[q.idx()].pop_front())
        }

        fn stream(&mut self, q: Queue, on: bool) -> io::Result<()> {
            self.streaming[q.idx()] = on;
            if !on {
                self.log.lock().unwrap().stream_offs.push(q);
            }
            self.process();
            Ok(())
        }

        /// Never sleeps: "nothing ready" is what a poll timeout returns.
        fn wait(&mut self, q: Queue, _timeout: Duration) -> io::Result<Readiness> {
            self.process();
            Ok(Readiness {
                ready: self.broken || !self.done[q.idx()].is_empty(),
                error: false,
            })
        }
    }

    fn settings(width: u32, height: u32) -> EncoderSettings {
        EncoderSettings {
            width,
            height,
            fps: 30,
            bitrate_kbps: 1500,
            threads: 1,
            slice_bytes: crate::encode::DEFAULT_SLICE_BYTES,
        }
    }

    fn open_fake(
        cfg: Config,
        s: EncoderSettings,
    ) -> (Result<V4l2M2m, EncodeError>, Arc<Mutex<Log>>) {
        let (fake, log) = Fake::new(cfg);
        let enc = V4l2M2m::with_device(Box::new(fake), Path::new("/dev/fake"), s);
        (enc, log)
    }

    fn open_ok(cfg: Config, s: EncoderSettings) -> (V4l2M2m, Arc<Mutex<Log>>) {
        let (enc, log) = open_fake(cfg, s);
        match enc {
            Ok(enc) => (enc, log),
            Err(e) => panic!("open failed: {e}"),
        }
    }

    fn open_err(cfg: Config, s: EncoderSettings) -> M2mError {
        match open_fake(cfg, s).0 {
            Ok(_) => panic!("open succeeded"),
            Err(EncodeError::V4l2M2m(e)) => e,
            Err(e) => panic!("not an M2mError: {e}"),
        }
    }

    /// A frame whose every byte tells where it came from.
    fn frame(w: usize, h: usize, n: u64, t0: Instant) -> RawFrame {
        let mut f = RawFrame::black(w, h);
        for (i, b) in f.data.iter_mut().enumerate() {
            *b = (i as u64 * 7 + n) as u8;
        }
        f.captured = t0 + Duration::from_millis(33 * n);
        f.stamp_ms = 1_700_000_000_000 + 33 * n;
        f
    }

    fn has_nal(data: &[u8], t: u8) -> bool {
        nal_types(data).any(|x| x == t)
    }

    #[test]
    fn the_driver_stride_and_height_are_honoured() {
        let (mut enc, log) = open_ok(Config::default(), settings(100, 60));
        let f = frame(100, 60, 3, Instant::now());
        enc.encode(&f, false).unwrap().expect("a picture");
        let log = log.lock().unwrap();
        let (q, coded) = log.formats[0];
        assert_eq!(
            (q, coded.fourcc, coded.width, coded.height),
            (Queue::Capture, PIX_FMT_H264, 100, 60)
        );
        assert!(coded.sizeimage >= CODED_BUFFER_MIN);
        let (q, raw) = log.formats[1];
        assert_eq!(
            (q, raw.fourcc, raw.bytesperline, raw.height),
            (Queue::Output, PIX_FMT_YUV420, 128, 64)
        );
        let got = &log.inputs[0];
        assert_eq!(got.len(), 128 * 64 * 3 / 2);
        let (y, u, v) = f.planes();
        for r in 0..60 {
            assert_eq!(&got[r * 128..][..100], &y[r * 100..][..100], "Y row {r}");
        }
        let (u_at, v_at) = (128 * 64, 128 * 64 + 64 * 32);
        for r in 0..30 {
            assert_eq!(&got[u_at + r * 64..][..50], &u[r * 50..][..50], "U row {r}");
            assert_eq!(&got[v_at + r * 64..][..50], &v[r * 50..][..50], "V row {r}");
        }
    }

    #[test]
    fn nv12_gets_interleaved_chroma() {
        let cfg = Config {
            no_yuv420: true,
            ..Config::default()
        };
        let (mut enc, log) = open_ok(cfg, settings(64, 32));
        let f = frame(64, 32, 1, Instant::now());
        enc.encode(&f, false).unwrap().expect("a picture");
        let log = log.lock().unwrap();
        assert_eq!(log.formats[1].1.fourcc, PIX_FMT_NV12);
        let got = &log.inputs[0];
        let (y, u, v) = f.planes();
        assert_eq!(&got[..64 * 32], y);
        let uv = &got[64 * 32..];
        for r in 0..16 {
            for c in 0..32 {
                assert_eq!(uv[r * 64 + 2 * c], u[r * 32 + c]);
                assert_eq!(uv[r * 64 + 2 * c + 1], v[r * 32 + c]);
            }
        }
    }

    #[test]
    fn frames_round_trip_with_their_stamps() {
        let (mut enc, log) = open_ok(Config::default(), settings(320, 240));
        let t0 = Instant::now();
        for n in 0..10 {
            let f = frame(320, 240, n, t0);
            let out = enc
                .encode(&f, n == 0)
                .unwrap()
                .expect("one out per frame in");
            assert_eq!(out.stamp_ms, f.stamp_ms);
            assert_eq!(out.captured, f.captured);
            assert_eq!(out.keyframe, n == 0, "frame {n}");
            assert_eq!(
                (out.width, out.height, out.codec),
                (320, 240, VideoCodec::H264)
            );
            assert_eq!(has_nal(&out.data, 7), n == 0, "SPS only on the IDR");
        }
        assert_eq!(log.lock().unwrap().inputs.len(), 10);
        assert_eq!(enc.implementation(), "v4l2m2m /dev/fake");
    }

    #[test]
    fn the_controls_are_set_and_bitrate_changes_live() {
        let (mut enc, log) = open_ok(Config::default(), settings(1280, 720));
        let expected = vec![
            (sys::V4L2_CID_MPEG_VIDEO_H264_PROFILE, 1),
            (
                sys::V4L2_CID_MPEG_VIDEO_H264_LEVEL,
                sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_3_1 as i32,
            ),
            (sys::V4L2_CID_MPEG_VIDEO_BITRATE, 1_500_000),
            (sys::V4L2_CID_MPEG_VIDEO_H264_I_PERIOD, 1800),
            (sys::V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER, 1),
        ];
        assert_eq!(log.lock().unwrap().controls, expected);
        assert_eq!(log.lock().unwrap().frame_rate, Some(30));
        let t0 = Instant::now();
        enc.encode(&frame(1280, 720, 0, t0), true).unwrap();

        log.lock().unwrap().controls.clear();
        enc.set_bitrate(800).unwrap();
        assert_eq!(enc.settings().bitrate_kbps, 800);
        let out = enc
            .encode(&frame(1280, 720, 1, t0), false)
            .unwrap()
            .unwrap();
        assert!(!out.keyframe, "a bitrate change costs no keyframe");
        assert_eq!(
            log.lock().unwrap().controls,
            vec![(sys::V4L2_CID_MPEG_VIDEO_BITRATE, 800_000)]
        );

        let out = enc.encode(&frame(1280, 720, 2, t0), true).unwrap().unwrap();
        assert!(out.keyframe && has_nal(&out.data, 7) && has_nal(&out.data, 8));
        assert_eq!(
            log.lock().unwrap().controls.last(),
            Some(&(sys::V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME, 1))
        );
    }

    #[test]
    fn a_refused_optional_control_is_skipped_and_headers_are_put_back() {
        let cfg = Config {
            refuse: vec![
                sys::V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER,
                sys::V4L2_CID_MPEG_VIDEO_H264_LEVEL,
            ],
            ..Config::default()
        };
        let (mut enc, _log) = open_ok(cfg, settings(640, 480));
        let t0 = Instant::now();
        let first = enc.encode(&frame(640, 480, 0, t0), true).unwrap().unwrap();
        assert!(has_nal(&first.data, 7));
        enc.encode(&frame(640, 480, 1, t0), false).unwrap();
        let idr = enc.encode(&frame(640, 480, 2, t0), true).unwrap().unwrap();
        assert!(idr.keyframe);
        assert!(
            idr.data.starts_with(&SPS) && has_nal(&idr.data, 8) && has_nal(&idr.data, 5),
            "the SPS/PPS of the first IDR come again: {:02x?}",
            &idr.data[..]
        );
    }

    #[test]
    fn a_refused_required_control_fails_the_open() {
        let cfg = Config {
            refuse: vec![sys::V4L2_CID_MPEG_VIDEO_BITRATE],
            ..Config::default()
        };
        assert!(matches!(
            open_err(cfg, settings(640, 480)),
            M2mError::ControlRefused {
                control: "BITRATE",
                ..
            }
        ));
        let cfg = Config {
            missing: vec![sys::V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME],
            ..Config::default()
        };
        assert!(matches!(
            open_err(cfg, settings(640, 480)),
            M2mError::MissingControl {
                control: "FORCE_KEY_FRAME"
            }
        ));
    }

    #[test]
    fn a_device_that_is_no_h264_encoder_is_refused() {
        let cfg = Config {
            caps: Some(sys::V4L2_CAP_VIDEO_CAPTURE | sys::V4L2_CAP_STREAMING),
            ..Config::default()
        };
        let e = open_err(cfg, settings(640, 480));
        assert!(
            matches!(
                e,
                M2mError::NotAnEncoder {
                    caps: 0x0400_0001,
                    ..
                }
            ),
            "{e}"
        );
        let cfg = Config {
            no_h264: true,
            ..Config::default()
        };
        let e = open_err(cfg, settings(640, 480));
        assert!(
            matches!(&e, M2mError::NoH264 { offered } if offered == "MJPG"),
            "{e}"
        );
    }

    #[test]
    fn a_driver_failing_mid_stream_gives_a_typed_error() {
        let t0 = Instant::now();
        for failure in [Failure::BufferFlag, Failure::Epipe] {
            let cfg = Config {
                fail: Some((2, failure)),
                ..Config::default()
            };
            let (mut enc, log) = open_ok(cfg, settings(320, 240));
            enc.encode(&frame(320, 240, 0, t0), true).unwrap();
            enc.encode(&frame(320, 240, 1, t0), false).unwrap();
            match enc.encode(&frame(320, 240, 2, t0), false) {
                Err(EncodeError::V4l2M2m(e)) => assert!(
                    matches!(
                        (failure, &e),
                        (Failure::BufferFlag, M2mError::BufferFailed { .. })
                            | (Failure::Epipe, M2mError::Stopped { .. })
                    ),
                    "{failure:?}: {e}"
                ),
                other => panic!("{failure:?}: {other:?}"),
            }
            drop(enc);
            assert_eq!(
                log.lock().unwrap().stream_offs,
                vec![Queue::Capture, Queue::Output]
            );
        }
    }

    #[test]
    fn a_stalled_driver_times_out() {
        let cfg = Config {
            stall: true,
            ..Config::default()
        };
        let (mut enc, _log) = open_ok(cfg, settings(320, 240));
        let r = enc.encode(&frame(320, 240, 0, Instant::now()), true);
        assert!(
            matches!(r, Err(EncodeError::V4l2M2m(M2mError::Timeout(_)))),
            "{r:?}"
        );
    }

    #[test]
    fn headers_in_a_buffer_of_their_own_join_their_idr() {
        let cfg = Config {
            separate_headers: true,
            ..Config::default()
        };
        let (mut enc, _log) = open_ok(cfg, settings(320, 240));
        let t0 = Instant::now();
        for n in 0..3 {
            let f = frame(320, 240, n, t0);
            let out = enc.encode(&f, n == 0).unwrap().unwrap();
            assert_eq!(out.stamp_ms, f.stamp_ms);
            assert_eq!(out.keyframe, n == 0);
            assert_eq!(has_nal(&out.data, 7), n == 0);
        }
    }

    #[test]
    fn a_picture_split_over_full_buffers_is_joined() {
        let cfg = Config {
            split: true,
            ..Config::default()
        };
        let (mut enc, _log) = open_ok(cfg, settings(320, 240));
        let t0 = Instant::now();
        enc.encode(&frame(320, 240, 0, t0), true).unwrap();
        let f = frame(320, 240, 1, t0);
        let out = enc.encode(&f, false).unwrap().unwrap();
        assert_eq!(out.stamp_ms, f.stamp_ms);
        assert_eq!(out.data.len(), CODED_BUFFER_MIN as usize + 2);
        assert_eq!(&out.data[..6], &[0, 0, 0, 1, 0x41, 0xff]);
        assert_eq!(&out.data[out.data.len() - 2..], &[0x9a, 1]);
    }

    #[test]
    fn the_probe_finds_constrained_baseline() {
        let (enc, _log) = open_ok(Config::default(), settings(1280, 720));
        let mut enc = crate::encode::Encoder::new(Box::new(enc));
        assert_eq!(
            enc.probe().unwrap(),
            crate::encode::SdpParams::H264 {
                profile_level_id: 0x42e01f
            }
        );
    }

    #[test]
    fn a_missing_device_names_its_path() {
        let path = Path::new("/nonexistent/rtcam-video99");
        let Err(e) = V4l2M2m::open(path, settings(640, 480)) else {
            panic!("opened a device that does not exist");
        };
        let text = e.to_string();
        assert!(text.contains("/nonexistent/rtcam-video99"), "{text}");
        assert!(matches!(e, EncodeError::V4l2M2m(M2mError::Open { .. })));
    }

    #[test]
    fn a_file_that_is_no_v4l2_device_fails_querycap() {
        let Err(e) = V4l2M2m::open(Path::new("/dev/null"), settings(640, 480)) else {
            panic!("/dev/null opened as an encoder");
        };
        match e {
            EncodeError::V4l2M2m(M2mError::Ioctl { call, source }) => {
                assert_eq!(call, "VIDIOC_QUERYCAP");
                // qemu-user answers an ioctl it does not know with ENOSYS.
                let errno = source.raw_os_error();
                assert!(
                    matches!(errno, Some(libc::ENOTTY | libc::ENOSYS)),
                    "{errno:?}"
                );
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn formats_survive_the_raw_struct() {
        let f = PixFormat {
            fourcc: PIX_FMT_YUV420,
            width: 1920,
            height: 1080,
            bytesperline: 1920,
            sizeimage: 1920 * 1080 * 3 / 2,
            planes: 1,
        };
        let raw = raw_format(Queue::Output, &f);
        assert_eq!(raw.type_, 10, "V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE");
        assert_eq!(format_of(&raw), f);
        assert_eq!(micros(timeval(12_345_678_901)), 12_345_678_901);
        assert_eq!(fourcc_name(PIX_FMT_H264), "H264");
    }

    /// The numbers videodev2.h gives on 64-bit Linux (printed by a C
    /// program including it); 32-bit differs where the structs do.
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[test]
    fn ioctl_numbers_match_videodev2_h() {
        assert_eq!(VIDIOC_QUERYCAP, 0x8068_5600);
        assert_eq!(VIDIOC_ENUM_FMT, 0xc040_5602);
        assert_eq!(VIDIOC_S_FMT, 0xc0d0_5605);
        assert_eq!(VIDIOC_REQBUFS, 0xc014_5608);
        assert_eq!(VIDIOC_QUERYBUF, 0xc058_5609);
        assert_eq!(VIDIOC_QBUF, 0xc058_560f);
        assert_eq!(VIDIOC_DQBUF, 0xc058_5611);
        assert_eq!(VIDIOC_STREAMON, 0x4004_5612);
        assert_eq!(VIDIOC_STREAMOFF, 0x4004_5613);
        assert_eq!(VIDIOC_S_PARM, 0xc0cc_5616);
        assert_eq!(VIDIOC_S_CTRL, 0xc008_561c);
        assert_eq!(VIDIOC_QUERYCTRL, 0xc044_5624);
        assert_eq!(VIDIOC_S_EXT_CTRLS, 0xc020_5648);
        assert_eq!(
            (PIX_FMT_H264, PIX_FMT_YUV420, PIX_FMT_NV12),
            (0x3436_3248, 0x3231_5559, 0x3231_564e)
        );
    }
}
