use super::*;
use crate::capture::stripe;

/// Pi 5, Camera Module 3 (the stand-in's default answer).
const IMX708: &str = "Available cameras
-----------------
0 : imx708 [4608x2592 10-bit RGGB] (/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a)
Modes: 'SRGGB10_CSI2P' : 1536x864 [120.13 fps - (768, 432)/3072x1728 crop]
                         2304x1296 [56.03 fps - (0, 0)/4608x2592 crop]
                         4608x2592 [14.35 fps - (0, 0)/4608x2592 crop]

";

/// raspberrypi/documentation PR #2587 (libcamera-apps, 2022): two
/// cameras, two formats for the first.
const IMX219_IMX477: &str = "Available cameras
-----------------
0 : imx219 [3280x2464] (/base/soc/i2c0mux/i2c@1/imx219@10)
Modes: 'SRGGB10_CSI2P' : 640x480 [206.65 fps - (1000, 752)/1280x960 crop]
                         1640x1232 [41.85 fps - (0, 0)/3280x2464 crop]
                         1920x1080 [47.57 fps - (680, 692)/1920x1080 crop]
                         3280x2464 [21.19 fps - (0, 0)/3280x2464 crop]
       'SRGGB8' : 640x480 [206.65 fps - (1000, 752)/1280x960 crop]
                  1640x1232 [41.85 fps - (0, 0)/3280x2464 crop]
                  1920x1080 [47.57 fps - (680, 692)/1920x1080 crop]
                  3280x2464 [21.19 fps - (0, 0)/3280x2464 crop]

1 : imx477 [4056x3040] (/base/soc/i2c0mux/i2c@1/imx477@1a)
Modes: 'SRGGB10_CSI2P' : 1332x990 [120.05 fps - (696, 528)/2664x1980 crop]
       'SRGGB12_CSI2P' : 2028x1080 [50.03 fps - (0, 440)/4056x2160 crop]
                         2028x1520 [40.01 fps - (0, 0)/4056x3040 crop]
                         4056x3040 [10.00 fps - (0, 0)/4056x3040 crop]

";

/// raspberrypi/linux PR #6208: an HQ camera on a Pi 5 with `-v`, the
/// control list after the modes.
const IMX477_PI5_VERBOSE: &str = "Available cameras
-----------------
0 : imx477 [4056x3040 12-bit RGGB] (/base/axi/pcie@1000120000/rp1/i2c@80000/imx477@1a)
Modes: 'SRGGB10_CSI2P' : 1332x990 [169.87 fps - (696, 528)/2664x1980 crop]
       'SRGGB12_CSI2P' : 2028x1080 [105.95 fps - (0, 440)/4056x2160 crop]
                         2028x1520 [75.36 fps - (0, 0)/4056x3040 crop]
                         4056x2160 [27.48 fps - (0, 440)/4056x3040 crop]
                         4056x3040 [19.53 fps - (0, 0)/4056x3040 crop]

Available controls for 4056x3040 SRGGB12_CSI2P mode:
----------------------------------------------------
AeEnable : [false..true]
ScalerCrop : [(0, 0)/64x64..(0, 0)/4056x3040]

";

/// rpicam-apps issue #215 (libcamera-apps, December 2021): no rates.
const IMX477_2021: &str = "Available cameras
-----------------
0 : imx477 [4056x3040] (/base/soc/i2c0mux/i2c@1/imx477@1a)
Modes: 'SRGGB10_CSI2P' : 1332x990 
       'SRGGB12_CSI2P' : 2028x1080 2028x1520 4056x3040
";

fn sizes(c: &CsiCamera) -> Vec<(u32, u32)> {
    c.modes.iter().map(|&(w, h, _)| (w, h)).collect()
}

#[test]
fn parses_a_camera_module_3() {
    let cams = parse_camera_list(IMX708);
    assert_eq!(
        cams,
        vec![CsiCamera {
            index: 0,
            sensor: "imx708".into(),
            modes: vec![
                (1536, 864, 120.13),
                (2304, 1296, 56.03),
                (4608, 2592, 14.35)
            ],
            path: "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a".into(),
        }]
    );
}

#[test]
fn parses_two_cameras_and_formats() {
    let cams = parse_camera_list(IMX219_IMX477);
    assert_eq!(cams.len(), 2);
    assert_eq!((cams[0].index, cams[0].sensor.as_str()), (0, "imx219"));
    assert_eq!(cams[0].path, "/base/soc/i2c0mux/i2c@1/imx219@10");
    assert_eq!(cams[0].modes.len(), 8, "both formats' modes, as listed");
    assert_eq!(cams[0].modes[0], (640, 480, 206.65));
    assert_eq!(cams[0].modes[7], (3280, 2464, 21.19));
    assert_eq!((cams[1].index, cams[1].sensor.as_str()), (1, "imx477"));
    assert_eq!(
        sizes(&cams[1]),
        [(1332, 990), (2028, 1080), (2028, 1520), (4056, 3040)]
    );
    assert_eq!(cams[1].modes[3].2, 10.0);
}

#[test]
fn skips_the_control_list_and_reads_old_output() {
    let cams = parse_camera_list(IMX477_PI5_VERBOSE);
    assert_eq!(cams.len(), 1);
    assert_eq!(cams[0].sensor, "imx477");
    assert_eq!(cams[0].modes.len(), 5, "{:?}", cams[0].modes);
    assert_eq!(cams[0].modes[0], (1332, 990, 169.87));

    let old = parse_camera_list(IMX477_2021);
    assert_eq!(
        sizes(&old[0]),
        [(1332, 990), (2028, 1080), (2028, 1520), (4056, 3040)]
    );
    assert!(old[0].modes.iter().all(|m| m.2.is_nan()), "no rates listed");
}

#[test]
fn no_cameras_and_noise_give_none() {
    assert!(parse_camera_list("No cameras available!\n").is_empty());
    assert!(parse_camera_list("").is_empty());
    let log = "[0:01:43.688918622] [2074]  INFO Camera camera_manager.cpp:284 libcamera v0.2.0\n";
    assert!(parse_camera_list(log).is_empty());
    // A camera without properties: the tool turns "[" into "]".
    let bare = parse_camera_list("0 : ov5647] (/base/soc/i2c0mux/i2c@1/ov5647@36)\n");
    assert_eq!(bare[0].sensor, "ov5647");
}

#[test]
fn stride_follows_each_isp() {
    for (w, vc4, pisp) in [
        (640, 640, 640),
        (1280, 1280, 1280),
        (1920, 1920, 1920),
        (1296, 1344, 1408),
        (1332, 1344, 1408),
        (800, 832, 896),
        (780, 832, 896),
        (2028, 2048, 2048),
        (4056, 4096, 4096),
        (100, 128, 128),
    ] {
        assert_eq!(yuv420_stride(Isp::Vc4, w), vc4, "VC4 at {w}");
        assert_eq!(yuv420_stride(Isp::Pisp, w), pisp, "PiSP at {w}");
    }
    // rpicam-apps issue #151: 4056x3040 frames of 18677760 bytes.
    assert_eq!(frame_len(yuv420_stride(Isp::Vc4, 4056), 3040), 18_677_760);
}

#[test]
fn detects_the_isp() {
    let names = |n: &[&str]| n.iter().map(|s| format!("{s}\n")).collect::<Vec<_>>();
    assert_eq!(
        Isp::from_video_names(&names(&["unicam-image", "bcm2835-isp-capture0"])),
        Some(Isp::Vc4)
    );
    assert_eq!(
        Isp::from_video_names(&names(&["rp1-cfe-fe_image0", "pispbe-output0"])),
        Some(Isp::Pisp)
    );
    assert_eq!(Isp::from_video_names(&names(&["vivid-000-vid-cap"])), None);
    assert_eq!(
        Isp::from_compatible(b"raspberrypi,5-model-b\0brcm,bcm2712\0"),
        Some(Isp::Pisp)
    );
    assert_eq!(
        Isp::from_compatible(b"raspberrypi,4-model-b\0brcm,bcm2711\0"),
        Some(Isp::Vc4)
    );
    assert_eq!(Isp::from_compatible(b"qemu,virt\0"), None);
}

#[test]
fn unpads_and_converts_full_range() {
    // 4x2, stride 8: luma rows then U and V rows of stride 4.
    let src = [
        0, 255, 128, 1, 9, 9, 9, 9, //
        2, 3, 4, 5, 9, 9, 9, 9, //
        0, 255, 9, 9, //
        128, 64, 9, 9,
    ];
    let mut f = RawFrame::black(2, 2);
    assert!(unpad_i420(&src, 4, 2, 8, &FULL_TO_LIMITED, &mut f));
    assert_eq!((f.width, f.height), (4, 2));
    let (y, u, v) = f.planes();
    assert_eq!(y, &[16, 235, 126, 17, 18, 19, 19, 20]);
    assert_eq!(u, &[16, 240]);
    assert_eq!(v, &[128, 72]);
    assert!(!unpad_i420(&src[..20], 4, 2, 8, &FULL_TO_LIMITED, &mut f));
    assert!(unpad_i420(&src, 4, 2, 8, &IDENTITY, &mut f));
    assert_eq!(f.planes().0, &[0, 255, 128, 1, 2, 3, 4, 5]);
    // The tables are monotonic and end where limited range ends.
    let r = &FULL_TO_LIMITED;
    assert!(r.y.windows(2).all(|p| p[0] <= p[1]) && r.c.windows(2).all(|p| p[0] <= p[1]));
    assert_eq!(
        (r.y[0], r.y[255], r.c[0], r.c[128], r.c[255]),
        (16, 235, 16, 128, 240)
    );
}

#[test]
fn parses_what_libcamera_configured() {
    let old = "[0:00:01.1] [2667]  INFO Camera camera.cpp:1202 configuring streams: (0) 3280x2464-YUV420 (1) 3280x2464-BGGR_PISP_COMP1";
    assert_eq!(
        parse_configured(old),
        Some(Configured {
            width: 3280,
            height: 2464,
            full_range: None
        })
    );
    let new = "INFO Camera camera.cpp:1215 configuring streams: (0) 640x360-YUV420/sYCC (1) 1536x864-BGGR_PISP_COMP1/RAW";
    assert_eq!(parse_configured(new).and_then(|c| c.full_range), Some(true));
    let video = "configuring streams: (0) 1280x720-YUV420/Rec709 (1) 2304x1296-SBGGR10_CSI2P";
    assert_eq!(
        parse_configured(video).and_then(|c| c.full_range),
        Some(false)
    );
    assert_eq!(parse_configured("Mode selection for 640:360:12:P"), None);
}

#[test]
fn the_command_line() {
    assert_eq!(
        video_args(1, 640, 360, 30).join(" "),
        "--camera 1 --width 640 --height 360 --framerate 30 --codec yuv420 \
         --timeout 0 --nopreview --flush --output -"
    );
}

#[test]
fn the_h264_command_line() {
    assert_eq!(
        h264_args(0, 1280, 720, 30).join(" "),
        "--camera 0 --width 1280 --height 720 --framerate 30 --codec h264 --inline \
         --intra 30 --profile baseline --level 4.1 \
         --timeout 0 --nopreview --flush --output -"
    );
    // One IDR a second at any rate.
    let args = h264_args(1, 640, 480, 15);
    let intra = args.iter().position(|a| a == "--intra").unwrap();
    assert_eq!(args[intra + 1], "15");
    assert_eq!(h264_args(0, 640, 480, 0)[intra + 1], "1");
}

#[test]
fn finds_the_tool_on_a_path() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-rpicam");
    let path = std::env::join_paths(["/nonexistent".into(), dir.clone()]).unwrap();
    assert_eq!(find_tool(Some(&path)), Some(dir.join("rpicam-vid")));
    assert_eq!(find_tool(Some(OsStr::new("/nonexistent"))), None);
    assert_eq!(find_tool(None), None);
}

// ------------------------------------------------ against the stand-in

fn fake() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-rpicam/rpicam-vid")
}

fn want(width: u32, height: u32, fps: u32) -> Want {
    Want {
        width,
        height,
        fps,
        format: CaptureFormat::Auto,
    }
}

fn open_fake(
    isp: Isp,
    envs: &[(&str, &str)],
    camera: u32,
    want: &Want,
) -> Result<RpicamSource, RpicamError> {
    let tool = fake();
    let launch = Launch {
        tool: &tool,
        isp,
        envs,
    };
    RpicamSource::open_with(&launch, camera, want)
}

fn temp_log(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("rtcam-rpicam-{}-{name}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// The stand-in's background: full-range `(x + y + 4n) % 256` below the
/// stripe in frame `n`, U a ramp across.
fn expected_luma(x: usize, y: usize, n: usize) -> u8 {
    FULL_TO_LIMITED.y[(x + y + 4 * n) % 256]
}

fn check_frame(f: &RawFrame, n: usize, before_ms: u64) {
    let (w, h) = (f.width, f.height);
    let (y, u, _) = f.planes();
    let d = stripe::decode_luma(y, w, h, w).expect("the stripe decodes");
    assert!(
        d.stamp_ms >= before_ms && d.stamp_ms <= f.stamp_ms,
        "{d:?} {}",
        f.stamp_ms
    );
    assert!(
        f.stamp_ms - d.stamp_ms < 1000,
        "drawn just before it was written"
    );
    // The converted stripe is exactly limited-range white and black.
    assert!(y[..w].iter().all(|&p| p == 16 || p == 235));
    for (px, py) in [(0, 40), (w - 1, 40), (w - 1, h - 1), (w / 3, h / 2)] {
        assert_eq!(
            y[py * w + px],
            expected_luma(px, py, n),
            "Y({px},{py}) of frame {n}"
        );
    }
    let cw = w / 2;
    assert_eq!(
        u[(h / 2 - 1) * cw + cw - 1],
        FULL_TO_LIMITED.c[64 + 96 * (cw - 1) / cw]
    );
    assert_eq!(u[0], 128, "the stripe is achromatic");
}

#[test]
fn reads_stamped_frames_from_the_stand_in() {
    let before = unix_ms(SystemTime::now());
    let mut src = open_fake(Isp::Vc4, &[], 0, &want(640, 360, 30)).expect("opens");
    assert_eq!(src.size(), (640, 360));
    assert!(src.full_range());
    let info = src.info();
    assert_eq!(
        (
            info.kind,
            info.device.as_deref(),
            info.card.as_deref(),
            info.format
        ),
        ("rpicam", Some("csi:0"), Some("imx708"), "YU12")
    );
    assert_eq!(src.identity().bus, "csi:0");
    let mut f = RawFrame::black(2, 2);
    let mut last = 0;
    for n in 0..5 {
        src.next_frame(&mut f).expect("a frame");
        assert_eq!((f.width, f.height), (640, 360));
        check_frame(&f, n, before);
        assert!(f.stamp_ms > last || n == 0);
        last = f.stamp_ms;
    }
}

#[test]
fn unpads_the_pi5_layout() {
    // 800 wide: stride 896 on PiSP (832 on VC4), so wrong unpadding
    // would shear every row and break the stripe and the ramp.
    let before = unix_ms(SystemTime::now());
    let envs = [("RTCAM_FAKE_RPICAM_ISP", "pisp")];
    let mut src = open_fake(Isp::Pisp, &envs, 0, &want(800, 450, 30)).expect("opens");
    assert_eq!(src.stride, 896);
    let mut f = RawFrame::black(2, 2);
    for n in 0..3 {
        src.next_frame(&mut f).expect("a frame");
        check_frame(&f, n, before);
    }
}

#[test]
fn a_crash_is_an_exit_with_its_last_words() {
    let envs = [("RTCAM_FAKE_RPICAM_EXIT_AFTER", "2")];
    let mut src = open_fake(Isp::Vc4, &envs, 0, &want(640, 360, 60)).expect("opens");
    let mut f = RawFrame::black(2, 2);
    src.next_frame(&mut f).expect("frame 1");
    src.next_frame(&mut f).expect("frame 2");
    match src.next_frame(&mut f) {
        Err(RpicamError::Exited {
            status,
            stderr_tail,
        }) => {
            assert!(status.contains('1'), "{status}");
            assert!(stderr_tail.contains("simulated crash"), "{stderr_tail}");
        }
        other => panic!("want Exited, got {:?}", other.err()),
    }
    let err = src.next_frame(&mut f).expect_err("still exited");
    assert!(err.to_string().contains("simulated crash"), "{err}");
    let pid = src.child.id();
    drop(src);
    assert!(gone(pid));
}

#[test]
fn drop_stops_and_reaps_the_child() {
    let log = temp_log("drop");
    let log_s = log.display().to_string();
    let envs = [("RTCAM_FAKE_RPICAM_LOG", log_s.as_str())];
    let mut src = open_fake(Isp::Vc4, &envs, 0, &want(640, 360, 30)).expect("opens");
    let mut f = RawFrame::black(2, 2);
    src.next_frame(&mut f).expect("a frame");
    let pid = src.child.id();
    assert!(!gone(pid));
    let start = Instant::now();
    drop(src);
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "SIGTERM sufficed"
    );
    assert!(gone(pid), "no zombie, no orphan");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let mine = format!("\"pid\": {pid}");
    assert!(
        text.lines()
            .any(|l| l.contains(&mine) && l.contains("sigterm")),
        "{text}"
    );
}

#[test]
fn a_missing_camera_is_named() {
    let none = [("RTCAM_FAKE_RPICAM_CAMERAS", "0")];
    match open_fake(Isp::Vc4, &none, 0, &want(640, 360, 30)) {
        Err(RpicamError::NoCamera { index: 0, found: 0 }) => {}
        other => panic!("want NoCamera, got {:?}", other.err()),
    }
    match open_fake(Isp::Vc4, &[], 1, &want(640, 360, 30)) {
        Err(e @ RpicamError::NoCamera { index: 1, found: 1 }) => {
            assert_eq!(
                e.to_string(),
                "there is no CSI camera 1: rpicam-vid lists 1"
            );
        }
        other => panic!("want NoCamera, got {:?}", other.err()),
    }
    let two = [("RTCAM_FAKE_RPICAM_CAMERAS", "2")];
    let src = open_fake(Isp::Vc4, &two, 1, &want(640, 480, 30)).expect("camera 1");
    assert_eq!(src.info().card.as_deref(), Some("imx219"));
}

#[test]
fn refuses_what_it_cannot_deliver() {
    let odd = open_fake(Isp::Vc4, &[], 0, &want(641, 360, 30));
    assert!(matches!(odd, Err(RpicamError::BadSize { .. })));
    let mjpeg = Want {
        format: CaptureFormat::Mjpeg,
        ..want(640, 360, 30)
    };
    assert!(matches!(
        open_fake(Isp::Vc4, &[], 0, &mjpeg),
        Err(RpicamError::Unsupported(_))
    ));
}

fn want_h264(width: u32, height: u32, fps: u32) -> Want {
    Want {
        format: CaptureFormat::H264,
        ..want(width, height, fps)
    }
}

#[test]
fn the_pi5_is_refused_h264_before_anything_runs() {
    let log = temp_log("pi5-h264");
    let log_s = log.display().to_string();
    let envs = [
        ("RTCAM_FAKE_RPICAM_ISP", "pisp"),
        ("RTCAM_FAKE_RPICAM_LOG", log_s.as_str()),
    ];
    let err = open_fake(Isp::Pisp, &envs, 0, &want_h264(640, 360, 30))
        .err()
        .expect("refused");
    assert!(matches!(err, RpicamError::Unsupported(_)), "{err:?}");
    let text = err.to_string();
    for needle in ["Pi 5", "hardware H.264 encoder", "--capture-format raw"] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert!(!log.exists(), "nothing was started");
    // Raw on the Pi 5 is fine.
    assert!(open_fake(Isp::Pisp, &envs[..1], 0, &want(640, 360, 30)).is_ok());
}

/// An openh264 stream like the hardware encoder's: constrained baseline,
/// SPS and PPS before each IDR, an IDR every `idr_every` frames.
fn openh264_stream(frames: usize, idr_every: usize) -> Vec<u8> {
    use crate::encode::VideoEncoder;
    let settings = crate::encode::EncoderSettings {
        width: 640,
        height: 360,
        fps: 30,
        bitrate_kbps: 600,
        threads: 1,
        slice_bytes: crate::encode::DEFAULT_SLICE_BYTES,
    };
    let mut enc = crate::encode::openh264::OpenH264::new(settings).unwrap();
    let mut frame = RawFrame::black(640, 360);
    let mut out = Vec::new();
    for n in 0..frames {
        let y = frame.planes_mut().0;
        y[(n % 300) * 640..(n % 300 + 40) * 640].fill(200);
        if let Some(f) = enc.encode(&frame, n % idr_every == 0).unwrap() {
            out.extend_from_slice(&f.data);
        }
    }
    out
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("rtcam-rpicam-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn passes_the_stand_ins_h264_through() {
    use crate::encode::passthrough::Passthrough;
    let file = openh264_stream(20, 10);
    let sps = crate::encode::level::sps_profile_level(&file).unwrap();
    let id = format!("{:02x}{:02x}{:02x}", sps.0, sps.1, sps.2);
    let h264 = temp_file("stream.h264", &file);
    let log = temp_log("h264");
    let (h264_s, log_s) = (h264.display().to_string(), log.display().to_string());
    let envs = [
        ("RTCAM_FAKE_RPICAM_H264", h264_s.as_str()),
        ("RTCAM_FAKE_RPICAM_LOG", log_s.as_str()),
    ];
    let mut src = open_fake(Isp::Vc4, &envs, 0, &want_h264(640, 360, 60)).expect("opens");
    let info = src.info();
    assert_eq!(
        (info.format, info.passthrough.as_deref(), info.full_range),
        ("H264", Some(id.as_str()), false)
    );
    assert!(info.why.contains("--codec h264"), "{}", info.why);
    assert!(!src.full_range());
    let mut frame = RawFrame::black(2, 2);
    assert!(
        src.next_frame(&mut frame).is_err(),
        "no pictures in H.264 mode"
    );
    // The stream from its first byte (the probe's reads come first),
    // looping, cut into access units that start on IDRs.
    let mut got = Vec::new();
    let mut stream = Passthrough::new();
    let (mut units, mut idrs) = (0, 0);
    while got.len() < 2 * file.len() {
        let chunk = match src.next(&mut frame).expect("reads") {
            Delivery::Coded(c) => c,
            other => panic!("want a chunk, got {other:?}"),
        };
        assert!(!chunk.end_of_unit && !chunk.data.is_empty());
        assert!(chunk.data.len() <= CHUNK_BYTES);
        stream.push(&chunk.data);
        got.extend_from_slice(&chunk.data);
        while let Some(au) = stream.next_access_unit() {
            let au = au.expect("a good access unit");
            units += 1;
            idrs += au.keyframe as usize;
        }
    }
    assert_eq!(&got[..file.len()], &file[..], "the file, byte for byte");
    assert_eq!(&got[file.len()..2 * file.len()], &file[..], "looped");
    assert!(units >= 35 && idrs >= 3, "{units} units, {idrs} IDRs");
    let pid = src.child.id();
    drop(src);
    assert!(gone(pid));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&h264);
    let h264_event: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "h264")
        .expect("the stand-in logged its H.264 options");
    assert_eq!(h264_event["inline"], true, "{h264_event}");
    assert_eq!(h264_event["intra"], 60, "{h264_event}");
    assert_eq!(h264_event["profile"], "baseline", "{h264_event}");
    assert_eq!(h264_event["level"], "4.1", "{h264_event}");
}

#[test]
fn h264_failures_are_named() {
    use crate::capture::annexb::tests::BitWriter;
    // No encoder (the stand-in without a stream says what the real
    // tool says without /dev/video11).
    match open_fake(Isp::Vc4, &[], 0, &want_h264(640, 360, 30)) {
        Err(RpicamError::Exited { stderr_tail, .. }) => {
            assert!(
                stderr_tail.contains("failed to open V4L2 H264 encoder"),
                "{stderr_tail}"
            );
        }
        other => panic!("want Exited, got {:?}", other.err()),
    }
    // B-frames: a main-profile SPS, then I, P, B slices.
    let mut w = BitWriter::default();
    w.u(8, 77)
        .u(8, 0)
        .u(8, 40)
        .ue(0)
        .ue(0)
        .ue(0)
        .ue(0)
        .ue(1)
        .u(1, 0);
    w.ue(39).ue(22).u(1, 1).u(1, 1).u(1, 0).u(1, 0);
    let mut stream = [0, 0, 0, 1].to_vec();
    stream.extend(w.nal(0x67));
    for (header, slice_type) in [(0x65, 7), (0x41, 5), (0x01, 6), (0x41, 5)] {
        let mut w = BitWriter::default();
        w.ue(0).ue(slice_type).ue(0).u(8, 0x5a);
        stream.extend([0, 0, 0, 1]);
        stream.extend(w.nal(header));
    }
    let path = temp_file("bframes.h264", &stream);
    let path_s = path.display().to_string();
    let envs = [("RTCAM_FAKE_RPICAM_H264", path_s.as_str())];
    let result = open_fake(Isp::Vc4, &envs, 0, &want_h264(640, 360, 60));
    let _ = std::fs::remove_file(&path);
    match result {
        Err(e @ RpicamError::Passthrough(_)) => {
            assert!(e.to_string().contains("B-frames"), "{e}");
        }
        other => panic!("want Passthrough, got {:?}", other.err()),
    }
    // A crash after the probe: the pending chunks, then the exit.
    let file = openh264_stream(10, 10);
    let path = temp_file("crash.h264", &file);
    let path_s = path.display().to_string();
    let envs = [
        ("RTCAM_FAKE_RPICAM_H264", path_s.as_str()),
        ("RTCAM_FAKE_RPICAM_EXIT_AFTER", "15"),
    ];
    let mut src = open_fake(Isp::Vc4, &envs, 0, &want_h264(640, 360, 60)).expect("opens");
    let _ = std::fs::remove_file(&path);
    let err = loop {
        match src.next_chunk() {
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(err.to_string().contains("simulated crash"), "{err}");
}

#[test]
fn a_hung_list_times_out_and_is_killed() {
    let log = temp_log("hang");
    let log_s = log.display().to_string();
    let envs = [
        ("RTCAM_FAKE_RPICAM_HANG", "1"),
        ("RTCAM_FAKE_RPICAM_LOG", log_s.as_str()),
    ];
    let start = Instant::now();
    // Long enough for the stand-in to start and log on a loaded machine
    // (at 500 ms it was once killed before it had written a line).
    let result = list_cameras_with(&fake(), &envs, Duration::from_secs(2));
    assert!(matches!(result, Err(RpicamError::Timeout(_))), "{result:?}");
    assert!(start.elapsed() < Duration::from_secs(6));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let start: serde_json::Value = text
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("the stand-in logged its start");
    let pid = start["pid"].as_u64().expect("pid") as u32;
    assert!(gone(pid), "the hung child was killed and reaped");
}

#[test]
fn the_stand_in_parses_like_boost() {
    let run = |args: &[&str]| {
        let out = Command::new(fake()).args(args).output().expect("runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--foo"]);
    assert_eq!(code, Some(255));
    assert!(err.contains("unrecognised option '--foo'"), "{err}");
    let (code, err) = run(&["--width"]);
    assert_eq!(code, Some(255));
    assert!(
        err.contains("the required argument for option '--width' is missing"),
        "{err}"
    );
    let out = Command::new(fake())
        .args(["--list-cameras", "--camera=0", "-t", "0", "-n"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let cams = parse_camera_list(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(cams, parse_camera_list(IMX708), "the real tool's format");
}
