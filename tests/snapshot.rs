//! `GET /api/snapshot.jpg`: the camera's current picture as a JPEG at the
//! stream's size, for a logged-in page or a bearer token, never for anyone
//! else; and a picture the viewers' setting changed shows the change.

use crate::common;

use common::{Server, https_raw, now_ms};

/// Decodes a JPEG to its luma plane (zune-jpeg, the MJPEG path's decoder).
fn luma(jpeg: &[u8]) -> (Vec<u8>, usize, usize) {
    let options = zune_jpeg::zune_core::options::DecoderOptions::default()
        .jpeg_set_out_colorspace(zune_jpeg::zune_core::colorspace::ColorSpace::Luma);
    let mut d = zune_jpeg::JpegDecoder::new_with_options(std::io::Cursor::new(jpeg), options);
    let y = d.decode().expect("a JPEG");
    let info = d.info().unwrap();
    (y, info.width as usize, info.height as usize)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_is_the_live_picture_as_a_jpeg() {
    let server = Server::start(&["--size", "640x360"]);
    let r = https_raw(server.http, "GET", "/api/snapshot.jpg", &[], b"").await;
    assert_eq!(r.status, 401, "not without credentials");
    let before = now_ms();
    let r = server.https("GET", "/api/snapshot.jpg", None, b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    let (y, w, h) = luma(&r.bytes);
    assert_eq!((w, h), (640, 360), "the stream's size");
    // JFIF's full range back to the limited range the stripe is read in.
    let limited: Vec<u8> = y
        .iter()
        .map(|&v| (16 + v as u32 * 219 / 255) as u8)
        .collect();
    let stamp = rtcam::capture::stripe::decode_luma(&limited, w, h, w)
        .expect("the timestamp stripe survives JPEG")
        .stamp_ms;
    let after = now_ms();
    assert!(
        stamp + 100 >= before && stamp <= after,
        "a picture taken now: stamp {stamp}, asked {before}..{after}"
    );
    let cookie = server.login().await;
    let r = https_raw(
        server.http,
        "GET",
        "/api/snapshot.jpg",
        &[("Cookie", &cookie)],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "a logged-in page may take one too");
}
