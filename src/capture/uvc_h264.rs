//! Keyframes on request from a UVC webcam's own H.264 (C920 class), through
//! the H.264 extension unit of the USB Video Class "H.264 Payload" spec
//! (1.0): its `UVCX_PICTURE_TYPE_CONTROL` makes the camera's encoder start
//! an IDR. uvcvideo exposes no V4L2 control for it, so the extension unit is
//! found in the camera's USB descriptors (sysfs) and set with
//! `UVCIOC_CTRL_QUERY`. A camera without the unit keeps its own GOP, and a
//! new viewer waits for its next IDR.

use std::path::{Path, PathBuf};

/// The H.264 extension unit's GUID, A29E7641-DE04-47E3-8B2B-F4341AFF003B,
/// as it is laid out in a descriptor (the first three fields little-endian).
const H264_XU_GUID: [u8; 16] = [
    0x41, 0x76, 0x9e, 0xa2, 0x04, 0xde, 0xe3, 0x47, 0x8b, 0x2b, 0xf4, 0x34, 0x1a, 0xff, 0x00, 0x3b,
];
/// The unit's `UVCX_PICTURE_TYPE_CONTROL` selector.
const PICTURE_TYPE_CONTROL: u8 = 0x09;
/// Its `wPicType` for "an IDR frame now".
const PIC_IDR: u16 = 1;
/// `UVC_SET_CUR`.
const SET_CUR: u8 = 0x01;
/// A class-specific interface descriptor, and the extension unit subtype.
const CS_INTERFACE: u8 = 0x24;
const VC_EXTENSION_UNIT: u8 = 0x06;

/// `struct uvc_xu_control_query` of `linux/uvcvideo.h`.
#[repr(C)]
struct XuQuery {
    unit: u8,
    selector: u8,
    query: u8,
    size: u16,
    data: *mut u8,
}

/// `UVCIOC_CTRL_QUERY`: `_IOWR('u', 0x21, struct uvc_xu_control_query)`.
const UVCIOC_CTRL_QUERY: u64 =
    (3 << 30) | ((std::mem::size_of::<XuQuery>() as u64) << 16) | ((b'u' as u64) << 8) | 0x21;

/// The H.264 extension unit's ID in a USB configuration's descriptors (as
/// sysfs gives them), if the device has one.
pub fn find_h264_unit(descriptors: &[u8]) -> Option<u8> {
    let mut rest = descriptors;
    while rest.len() >= 2 {
        let len = usize::from(rest[0]);
        if len < 2 || len > rest.len() {
            return None;
        }
        let d = &rest[..len];
        if len >= 20
            && d[1] == CS_INTERFACE
            && d[2] == VC_EXTENSION_UNIT
            && d[4..20] == H264_XU_GUID
        {
            return Some(d[3]);
        }
        rest = &rest[len..];
    }
    None
}

/// The USB descriptors of the device behind a V4L2 node, from sysfs
/// (`/sys/class/video4linux/videoN/device` is its USB interface).
pub fn descriptors_of(node: &Path) -> Option<Vec<u8>> {
    let name = std::fs::canonicalize(node).ok()?.file_name()?.to_owned();
    let interface = PathBuf::from("/sys/class/video4linux")
        .join(name)
        .join("device");
    let interface = std::fs::canonicalize(interface).ok()?;
    std::fs::read(interface.parent()?.join("descriptors")).ok()
}

/// Asks the camera behind `fd` for an IDR through its H.264 extension unit.
pub fn request_idr(fd: std::os::raw::c_int, unit: u8) -> std::io::Result<()> {
    // wLayerOrViewID 0 (the whole stream), wPicType IDR; little-endian.
    let mut data = [0, 0, PIC_IDR as u8, (PIC_IDR >> 8) as u8];
    let mut query = XuQuery {
        unit,
        selector: PICTURE_TYPE_CONTROL,
        query: SET_CUR,
        size: data.len() as u16,
        data: data.as_mut_ptr(),
    };
    // SAFETY: the query points at a live 4-byte buffer for the call's
    // duration, and UVCIOC_CTRL_QUERY reads or writes no more than `size`.
    let r = unsafe { libc::ioctl(fd, UVCIOC_CTRL_QUERY as _, &mut query as *mut XuQuery) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VideoControl interface's class-specific descriptors: header,
    /// camera terminal, processing unit, a vendor extension unit, the H.264
    /// extension unit (ID 12, as on the C920), output terminal.
    fn webcam_descriptors(with_h264: bool) -> Vec<u8> {
        let mut d = vec![
            9,
            0x04,
            0,
            0,
            1,
            0x0e,
            0x01,
            0x00,
            0, // interface
            13,
            CS_INTERFACE,
            0x01,
            0x00,
            0x01,
            0x6c,
            0,
            0,
            0,
            0,
            0,
            0,
            1, // VC header (short)
            18,
            CS_INTERFACE,
            0x02,
            1,
            0x01,
            0x02,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            3,
            0x0a,
            0x2a,
            0x00,
        ];
        let mut xu = |id: u8, guid: [u8; 16]| {
            let mut e = vec![27, CS_INTERFACE, VC_EXTENSION_UNIT, id];
            e.extend_from_slice(&guid);
            e.extend_from_slice(&[16, 1, 3, 2, 0xff, 0xff, 0]);
            d.extend_from_slice(&e);
        };
        xu(9, [0x11; 16]);
        if with_h264 {
            xu(12, H264_XU_GUID);
        }
        d.extend_from_slice(&[9, CS_INTERFACE, 0x03, 4, 0x01, 0x01, 0, 3, 0]);
        d
    }

    #[test]
    fn finds_the_h264_extension_unit() {
        assert_eq!(find_h264_unit(&webcam_descriptors(true)), Some(12));
        assert_eq!(find_h264_unit(&webcam_descriptors(false)), None);
    }

    #[test]
    fn broken_descriptors_are_not_read_past() {
        let d = webcam_descriptors(true);
        for cut in 0..d.len() {
            let _ = find_h264_unit(&d[..cut]);
        }
        assert_eq!(
            find_h264_unit(&[0, 0x24, 6]),
            None,
            "a zero length stops the walk"
        );
        assert_eq!(find_h264_unit(&[200, 0x24, 6, 1]), None);
    }

    #[test]
    fn the_ioctl_number_matches_the_kernel_header() {
        // 64-bit: a 16-byte struct (0xc0107521); armhf: 12 bytes (0xc00c7521).
        let want = if std::mem::size_of::<usize>() == 8 {
            0xc010_7521
        } else {
            0xc00c_7521
        };
        assert_eq!(UVCIOC_CTRL_QUERY, want);
    }

    #[test]
    fn a_node_without_a_usb_device_has_no_descriptors() {
        assert!(descriptors_of(Path::new("/dev/null")).is_none());
    }
}
