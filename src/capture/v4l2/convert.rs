//! Raw frames to I420: YU12, NV12 and YUYV, and the age of a buffer by
//! the driver's timestamp.

use super::*;

/// One raw buffer into I420 (public for examples/capture_bench.rs).
pub fn convert(
    p: PixelFormat,
    data: &[u8],
    w: usize,
    h: usize,
    stride: usize,
    frame: &mut RawFrame,
) -> Result<(), String> {
    let ok = match p {
        PixelFormat::Yu12 => yu12_to_i420(data, w, h, stride, frame),
        PixelFormat::Nv12 => nv12_to_i420(data, w, h, stride, frame),
        PixelFormat::Yuyv => yuyv_to_i420(data, w, h, stride, frame),
    };
    ok.then_some(())
        .ok_or_else(|| format!("a {}-byte buffer is too short", data.len()))
}

/// How long ago the driver stamped the buffer (its timestamps are
/// CLOCK_MONOTONIC). Zero when the stamp is missing or implausible.
pub(super) fn capture_age(sec: i64, usec: i64) -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to a valid pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 || sec <= 0 {
        return Duration::ZERO;
    }
    // time_t and c_long are 32-bit on armhf: widen before multiplying (a
    // no-op on 64-bit targets, hence the allow).
    #[allow(clippy::useless_conversion)]
    let now_us = i64::from(now.tv_sec) * 1_000_000 + i64::from(now.tv_nsec) / 1000;
    let age_us = now_us - (sec * 1_000_000 + usec);
    if (0..1_000_000).contains(&age_us) {
        Duration::from_micros(age_us as u64)
    } else {
        Duration::ZERO
    }
}

pub(super) fn yu12_to_i420(
    src: &[u8],
    w: usize,
    h: usize,
    stride: usize,
    out: &mut RawFrame,
) -> bool {
    let cs = stride / 2;
    if src.len() < stride * h + 2 * cs * (h / 2) - (stride - w) {
        return false;
    }
    let (y, u, v) = out.planes_mut();
    for row in 0..h {
        y[row * w..(row + 1) * w].copy_from_slice(&src[row * stride..row * stride + w]);
    }
    let (cw, ch) = (w / 2, h / 2);
    let u_off = stride * h;
    let v_off = u_off + cs * ch;
    for row in 0..ch {
        u[row * cw..(row + 1) * cw].copy_from_slice(&src[u_off + row * cs..u_off + row * cs + cw]);
        if let Some(s) = src.get(v_off + row * cs..v_off + row * cs + cw) {
            v[row * cw..(row + 1) * cw].copy_from_slice(s);
        } else {
            return false;
        }
    }
    true
}

pub(super) fn nv12_to_i420(
    src: &[u8],
    w: usize,
    h: usize,
    stride: usize,
    out: &mut RawFrame,
) -> bool {
    let (cw, ch) = (w / 2, h / 2);
    if src.len() < stride * h + stride * (ch - 1) + w {
        return false;
    }
    let (y, u, v) = out.planes_mut();
    for row in 0..h {
        y[row * w..(row + 1) * w].copy_from_slice(&src[row * stride..row * stride + w]);
    }
    let uv = &src[stride * h..];
    for row in 0..ch {
        let line = &uv[row * stride..row * stride + w];
        for (i, pair) in line.chunks_exact(2).enumerate() {
            u[row * cw + i] = pair[0];
            v[row * cw + i] = pair[1];
        }
    }
    true
}

pub(super) fn yuyv_to_i420(
    src: &[u8],
    w: usize,
    h: usize,
    stride: usize,
    out: &mut RawFrame,
) -> bool {
    if src.len() < stride * (h - 1) + 2 * w {
        return false;
    }
    let cw = w / 2;
    let (y, u, v) = out.planes_mut();
    for row in (0..h).step_by(2) {
        let a = &src[row * stride..row * stride + 2 * w];
        let b = &src[(row + 1) * stride..(row + 1) * stride + 2 * w];
        let (ya, yb) = y[row * w..(row + 2) * w].split_at_mut(w);
        let ur = &mut u[(row / 2) * cw..(row / 2 + 1) * cw];
        let vr = &mut v[(row / 2) * cw..(row / 2 + 1) * cw];
        for i in 0..cw {
            let pa = &a[4 * i..4 * i + 4];
            let pb = &b[4 * i..4 * i + 4];
            ya[2 * i] = pa[0];
            ya[2 * i + 1] = pa[2];
            yb[2 * i] = pb[0];
            yb[2 * i + 1] = pb[2];
            ur[i] = (pa[1] as u16 + pb[1] as u16).div_ceil(2) as u8;
            vr[i] = (pa[3] as u16 + pb[3] as u16).div_ceil(2) as u8;
        }
    }
    true
}
