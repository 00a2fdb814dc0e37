//! The kernel's device: an fd opened non-blocking, the raw ioctls with
//! their request numbers, and the mmap'ed buffers. The only code here that
//! is unsafe, and the only code that talks to the kernel.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::{self, NonNull};
use std::time::{Duration, Instant};

use v4l2_sys_mit as sys;

use super::device::{Caps, Dequeued, Device, PixFormat, Queue, Readiness};

/// ENUM_FMT stops at EINVAL; this bounds a driver that never says so.
const MAX_FORMATS: u32 = 64;

// --- videodev2.h pieces that v4l2-sys-mit (bindgen) cannot carry ---------

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
pub(super) struct FdDevice {
    // Declared before `fd`: mappings are dropped (unmapped) before close.
    maps: [Vec<Mapping>; 2],
    fd: OwnedFd,
}

impl FdDevice {
    pub(super) fn open(path: &Path) -> io::Result<Self> {
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

    fn now(&self) -> Instant {
        Instant::now()
    }
}

#[cfg(test)]
mod tests {
    use super::super::device::{PIX_FMT_H264, PIX_FMT_YUV420};
    use super::super::setup::fourcc_name;
    use super::*;

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
        use super::super::device::PIX_FMT_NV12;
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
