//! rpicam-vid's frame layout: the ISP's row stride, and the padded,
//! full-range YUV420 it writes turned into rtcam's tightly packed,
//! limited-range frames.

use super::*;

/// The driver name in a CSI camera's identity (see `capture::find`).
pub(super) const DRIVER: &str = crate::capture::find::CSI_DRIVER;

/// The ISP that lays out rpicam-vid's buffers, which decides the row stride.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isp {
    /// VideoCore IV (`bcm2835-isp`): Pi Zero, 1, 2, 3, 4 and their CMs.
    Vc4,
    /// PiSP (`pispbe` behind the RP1 `rp1-cfe`): Pi 5 and CM5.
    Pisp,
}

impl Isp {
    /// The ISP of this machine, found as rpicam-apps finds its platform
    /// (`core/options.cpp` `get_platform` asks each `/dev/video*` for its
    /// card name): here from the node names in sysfs, else the device
    /// tree's SoC. VC4 when neither says, which is also what the test
    /// stand-in pads for.
    pub fn detect() -> Isp {
        static DETECTED: OnceLock<Isp> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            Isp::from_video_names(&video_node_names())
                .or_else(|| {
                    let compatible = std::fs::read("/proc/device-tree/compatible");
                    Isp::from_compatible(&compatible.unwrap_or_default())
                })
                .unwrap_or(Isp::Vc4)
        })
    }

    /// From V4L2 node names (`/sys/class/video4linux/*/name`): the ISP's own
    /// nodes, or the CSI receiver that comes with it.
    pub(super) fn from_video_names(names: &[String]) -> Option<Isp> {
        let has = |prefix: &str| names.iter().any(|n| n.trim().starts_with(prefix));
        if has("pispbe") || has("rp1-cfe") {
            Some(Isp::Pisp)
        } else if has("bcm2835-isp") || has("unicam") {
            Some(Isp::Vc4)
        } else {
            None
        }
    }

    /// From the device tree's NUL-separated `compatible` list.
    pub(super) fn from_compatible(compatible: &[u8]) -> Option<Isp> {
        let text = String::from_utf8_lossy(compatible);
        let socs: Vec<&str> = text.split('\0').collect();
        if socs.contains(&"brcm,bcm2712") {
            Some(Isp::Pisp)
        } else if socs.iter().any(|s| {
            [
                "brcm,bcm2835",
                "brcm,bcm2836",
                "brcm,bcm2837",
                "brcm,bcm2711",
            ]
            .contains(s)
        }) {
            Some(Isp::Vc4)
        } else {
            None
        }
    }
}

impl std::fmt::Display for Isp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Isp::Vc4 => "VC4",
            Isp::Pisp => "PiSP",
        })
    }
}

pub(super) fn video_node_names() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/video4linux") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("name")).ok())
        .collect()
}

/// Bytes per luma row of rpicam-vid's YUV420 at `width`; each chroma row
/// is half of it.
///
/// - VC4: the bcm2835-isp driver sets `bytesperline = ALIGN(width, 64)` for
///   YUV420, so that both chroma planes start 32-byte aligned (raspberrypi/linux
///   `bcm2835-isp-fmts.h`, PR #4419; rpicam-apps issue #188: 780 wide comes
///   out 832; issue #151: 4056x3040 frames are 4096*3040*1.5 bytes).
/// - PiSP: libcamera aligns the chroma stride to 64 (libpisp
///   `compute_optimal_stride`) and makes the luma stride twice that
///   (`pisp.cpp` `computeOptimalStride`), i.e. `2 * ALIGN(width/2, 64)`:
///   1296 wide is 1408 here but 1344 on VC4.
///
/// No rows are added: the buffer is `stride * height * 3/2` bytes on both.
pub fn yuv420_stride(isp: Isp, width: usize) -> usize {
    match isp {
        Isp::Vc4 => width.next_multiple_of(64),
        Isp::Pisp => 2 * (width / 2).next_multiple_of(64),
    }
}

/// Bytes of one frame on the pipe.
pub(super) fn frame_len(stride: usize, height: usize) -> usize {
    stride * height + 2 * (stride / 2) * (height / 2)
}

/// Full-range to limited-range tables (`Y' = 16 + Y*219/255`,
/// `C' = 128 + (C-128)*224/255`, rounded), as `capture::mjpeg` converts.
pub(super) struct Range {
    pub(super) y: [u8; 256],
    pub(super) c: [u8; 256],
}

impl Range {
    pub(super) const fn full_to_limited() -> Range {
        Range {
            y: crate::capture::range::luma_table(),
            c: crate::capture::range::chroma_table(),
        }
    }

    pub(super) const fn identity() -> Range {
        let mut t = [0u8; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = i as u8;
            i += 1;
        }
        Range { y: t, c: t }
    }
}

pub(super) static FULL_TO_LIMITED: Range = Range::full_to_limited();

pub(super) static IDENTITY: Range = Range::identity();

/// Copies one padded frame (`stride` per luma row, `stride/2` per chroma
/// row) into `out` as tight I420 at `w`x`h`, each sample through `range`.
/// False when `src` is too short.
pub(super) fn unpad_i420(
    src: &[u8],
    w: usize,
    h: usize,
    stride: usize,
    range: &Range,
    out: &mut RawFrame,
) -> bool {
    let cs = stride / 2;
    if stride < w || src.len() < frame_len(stride, h) {
        return false;
    }
    out.width = w;
    out.height = h;
    out.data.resize(RawFrame::i420_len(w, h), 0);
    let (y, u, v) = out.planes_mut();
    let (cw, ch) = (w / 2, h / 2);
    let (src_y, src_c) = src.split_at(stride * h);
    let (src_u, src_v) = src_c.split_at(cs * ch);
    copy_plane(src_y, stride, y, w, &range.y);
    copy_plane(src_u, cs, u, cw, &range.c);
    copy_plane(src_v, cs, v, cw, &range.c);
    true
}

pub(super) fn copy_plane(
    src: &[u8],
    stride: usize,
    dst: &mut [u8],
    width: usize,
    table: &[u8; 256],
) {
    if width == 0 {
        return;
    }
    for (row, line) in src.chunks(stride).zip(dst.chunks_exact_mut(width)) {
        for (d, &s) in line.iter_mut().zip(&row[..width]) {
            *d = table[usize::from(s)];
        }
    }
}
