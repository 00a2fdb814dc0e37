use super::*;

fn mode(kind: Kind, width: u32, height: u32, max_fps: f64) -> Mode {
    let fourcc = *b"XXXX";
    Mode {
        kind,
        fourcc,
        width,
        height,
        max_fps,
    }
}

fn want(format: CaptureFormat) -> Want {
    Want {
        width: 1280,
        height: 720,
        fps: 30,
        format,
    }
}

/// A C920-class webcam: YUYV at 720p only 10 fps over USB 2.0, MJPEG
/// and H.264 at 30.
fn webcam() -> Vec<Mode> {
    vec![
        mode(Kind::Raw(PixelFormat::Yuyv), 640, 480, 30.0),
        mode(Kind::Raw(PixelFormat::Yuyv), 1280, 720, 10.0),
        mode(Kind::Mjpeg, 640, 480, 30.0),
        mode(Kind::Mjpeg, 1280, 720, 30.0),
        mode(Kind::H264, 1280, 720, 30.0),
        mode(Kind::H264, 1920, 1080, 30.0),
    ]
}

#[test]
fn auto_takes_raw_when_it_has_the_size_and_rate() {
    let c = choose(
        &webcam(),
        &Want {
            width: 640,
            height: 480,
            ..want(CaptureFormat::Auto)
        },
    )
    .unwrap();
    assert_eq!(c.mode.kind, Kind::Raw(PixelFormat::Yuyv));
    assert_eq!((c.mode.width, c.mode.height), (640, 480));
}

#[test]
fn auto_takes_mjpeg_when_raw_is_too_slow_and_says_why() {
    let c = choose(&webcam(), &want(CaptureFormat::Auto)).unwrap();
    assert_eq!(c.mode.kind, Kind::Mjpeg);
    assert!(c.why.contains("raw YUYV is only 10.0 fps"), "{}", c.why);
}

#[test]
fn auto_takes_h264_when_nothing_else_has_the_rate() {
    let modes: Vec<Mode> = webcam()
        .into_iter()
        .filter(|m| m.kind != Kind::Mjpeg)
        .collect();
    let c = choose(&modes, &want(CaptureFormat::Auto)).unwrap();
    assert_eq!(c.mode.kind, Kind::H264);
}

#[test]
fn a_forced_format_is_kept_even_when_slower() {
    let c = choose(&webcam(), &want(CaptureFormat::Raw)).unwrap();
    assert_eq!(c.mode, mode(Kind::Raw(PixelFormat::Yuyv), 1280, 720, 10.0));
    let c = choose(&webcam(), &want(CaptureFormat::H264)).unwrap();
    assert_eq!(c.mode.kind, Kind::H264);
    let only_raw = vec![mode(Kind::Raw(PixelFormat::Yu12), 640, 360, 30.0)];
    assert_eq!(choose(&only_raw, &want(CaptureFormat::Mjpeg)), None);
}

#[test]
fn without_the_size_the_nearest_fast_enough_mode_wins() {
    // vivid: raw only, 720p at 12.5 fps.
    let vivid = vec![
        mode(Kind::Raw(PixelFormat::Yu12), 640, 360, 40.0),
        mode(Kind::Raw(PixelFormat::Yu12), 1280, 720, 12.5),
        mode(Kind::Raw(PixelFormat::Yuyv), 1280, 720, 12.5),
    ];
    let c = choose(&vivid, &want(CaptureFormat::Auto)).unwrap();
    assert_eq!(c.mode, vivid[1], "the size first, at its best rate");
    let c = choose(
        &vivid,
        &Want {
            width: 800,
            height: 450,
            ..want(CaptureFormat::Auto)
        },
    )
    .unwrap();
    assert_eq!((c.mode.width, c.mode.height), (640, 360));
    assert!(c.why.starts_with("no format has 800x450"), "{}", c.why);
}

#[test]
fn nearest_size_prefers_exact_then_area() {
    let offered = [
        (320, 180),
        (640, 360),
        (640, 480),
        (1280, 720),
        (1920, 1080),
    ];
    assert_eq!(nearest_size(&offered, (1280, 720)), Some((1280, 720)));
    assert_eq!(nearest_size(&offered, (1200, 700)), Some((1280, 720)));
    assert_eq!(nearest_size(&offered, (800, 600)), Some((640, 480)));
    assert_eq!(nearest_size(&[], (800, 600)), None);
}

#[test]
fn yuyv_converts_luma_and_averages_chroma() {
    // 4x2 YUYV: Y values 1..8, U 100/110, V 200/210 on the two rows.
    let src = [
        1, 100, 2, 200, 3, 100, 4, 200, //
        5, 110, 6, 210, 7, 110, 8, 210,
    ];
    let mut f = RawFrame::black(4, 2);
    assert!(yuyv_to_i420(&src, 4, 2, 8, &mut f));
    let (y, u, v) = f.planes();
    assert_eq!(y, &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(u, &[105, 105]);
    assert_eq!(v, &[205, 205]);
    assert!(
        !yuyv_to_i420(&src[..10], 4, 2, 8, &mut f),
        "short buffer refused"
    );
}

#[test]
fn nv12_deinterleaves_with_stride() {
    // 2x2 picture, stride 4: Y rows padded, one UV row.
    let src = [10, 11, 0, 0, 12, 13, 0, 0, 50, 60, 0, 0];
    let mut f = RawFrame::black(2, 2);
    assert!(nv12_to_i420(&src, 2, 2, 4, &mut f));
    let (y, u, v) = f.planes();
    assert_eq!(
        (y, u, v),
        (&[10u8, 11, 12, 13][..], &[50u8][..], &[60u8][..])
    );
}

#[test]
fn yu12_copies_planes() {
    let src = [1, 2, 3, 4, 5, 6];
    let mut f = RawFrame::black(2, 2);
    assert!(yu12_to_i420(&src, 2, 2, 2, &mut f));
    assert_eq!(f.data, src);
}
