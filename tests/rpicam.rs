//! A CSI camera through `rpicam-vid`, end to end: rtcam finds the tool on
//! PATH (here the stand-in `tests/fake-rpicam/rpicam-vid`, which writes
//! padded full-range YUV420 with the timestamp stripe as the real tool
//! does), a WHEP viewer decodes the camera's frames, a crashed rpicam-vid is
//! started again, and no child outlives rtcam; and `--capture-format h264`,
//! where the stand-in loops an openh264 stream made here as the hardware
//! encoder's and rtcam passes it through.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// One line of the stand-in's log: a start (`argv`), an exit (`why`), or
/// what `--codec h264` was given (`h264`).
#[derive(Debug, Clone)]
struct Event {
    event: String,
    pid: u64,
    time_ms: u64,
    argv: Vec<String>,
    why: Option<String>,
}

/// The stand-in's log and the environment that points rtcam at it.
struct Fake {
    log: PathBuf,
    path: String,
}

impl Fake {
    fn new(name: &str) -> Fake {
        let log = std::env::temp_dir().join(format!(
            "rtcam-it-fake-rpicam-{}-{name}.log",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&log);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-rpicam");
        let path = format!(
            "{}:{}",
            dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Fake { log, path }
    }

    fn log_path(&self) -> String {
        self.log.display().to_string()
    }

    fn events(&self) -> Vec<Event> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| Event {
                event: v["event"].as_str().unwrap_or_default().to_string(),
                pid: v["pid"].as_u64().unwrap_or(0),
                time_ms: v["time_ms"].as_u64().unwrap_or(0),
                argv: v["argv"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
                why: v["why"].as_str().map(String::from),
            })
            .collect()
    }

    /// Starts that stream video (not `--list-cameras`).
    fn video_starts(&self) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| e.event == "start" && !e.argv.iter().any(|a| a == "--list-cameras"))
            .collect()
    }

    fn exit_of(&self, pid: u64) -> Option<String> {
        self.events()
            .into_iter()
            .find(|e| e.pid == pid && e.why.is_some())
            .and_then(|e| e.why)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Whether `argv` sets `opt` to `value`, as `--opt value` or `--opt=value`.
fn has_opt(argv: &[String], opt: &str, value: &str) -> bool {
    argv.windows(2).any(|w| w[0] == opt && w[1] == value)
        || argv.iter().any(|a| *a == format!("{opt}={value}"))
}

/// Waits until every pid has left /proc (exited and reaped).
fn all_gone(pids: &[u64], within: Duration) -> Vec<u64> {
    let until = Instant::now() + within;
    loop {
        let alive: Vec<u64> = pids
            .iter()
            .copied()
            .filter(|p| Path::new(&format!("/proc/{p}")).exists())
            .collect();
        if alive.is_empty() || Instant::now() >= until {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `/api/status` once the capture reports the CSI camera.
async fn rpicam_status(server: &Server) -> Value {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let status = server.status().await;
        if status["source"]["kind"] == "rpicam" || Instant::now() >= until {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops rtcam and checks that it stopped every rpicam-vid it started.
fn terminate_and_check_children(server: &mut Server, fake: &Fake) {
    let (_status, took) = server.terminate();
    eprintln!("rtcam stopped in {took:?}");
    let pids: Vec<u64> = fake.events().iter().map(|e| e.pid).collect();
    let alive = all_gone(&pids, Duration::from_secs(3));
    assert!(alive.is_empty(), "rpicam-vid outlived rtcam: {alive:?}");
    for start in fake.video_starts() {
        let why = fake.exit_of(start.pid);
        assert!(
            matches!(why.as_deref(), Some("sigterm") | Some("crash")),
            "rpicam-vid {} ended by {why:?}: rtcam must stop it (SIGTERM), not leave it to a broken pipe",
            start.pid
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csi_camera_through_rpicam_vid_reaches_a_whep_viewer() {
    let fake = Fake::new("stream");
    let log = fake.log_path();
    // An emulated CPU encodes slower: a lower rate, the same checks.
    let (fps, want) = if emulated() { ("15", 30) } else { ("30", 60) };
    let mut server = Server::start_with_env(
        &["--source", "rpicam", "--size", "640x360", "--fps", fps],
        &[("PATH", &fake.path), ("RTCAM_FAKE_RPICAM_LOG", &log)],
    );
    let status = rpicam_status(&server).await;
    let source = &status["source"];
    assert_eq!(source["kind"], "rpicam", "{status}");
    assert_eq!(source["device"], "csi:0", "{status}");
    assert_eq!(source["card"], "imx708", "{status}");
    assert_eq!(source["format"], "YU12", "{status}");
    assert_eq!(source["full_range"], true, "{status}");
    assert_eq!(
        (source["width"].as_u64(), source["height"].as_u64()),
        (Some(640), Some(360)),
        "{status}"
    );

    let mut client = Client::new();
    whep_connect(&server, &mut client).await;
    let limit = Duration::from_secs(if emulated() { 60 } else { 20 });
    let report = tokio::task::spawn_blocking(move || client.run_decoded(want, limit))
        .await
        .unwrap();
    eprintln!(
        "rpicam: {} frames, {} decoded, {} stamped, latency p50 {:?} ms",
        report.frames,
        report.decoded,
        report.stamped,
        report.latency_p50()
    );
    assert!(report.connected);
    assert!(report.stamped >= want, "{report:?}");
    assert_eq!(report.unstamped, 0, "every frame carries a valid stripe");
    assert_eq!(report.sizes, vec![(640, 360)]);
    assert!(
        report.stamps.windows(2).all(|w| w[0] < w[1]),
        "each frame its own time: {:?}",
        report.stamps
    );
    let p50 = report.latency_p50().expect("latencies");
    let bound = if emulated() { 3000 } else { 1000 };
    assert!(
        (0..bound).contains(&p50),
        "stamped by the wall clock: p50 {p50} ms"
    );

    // The picture is the stand-in's, unpadded and in limited range: a luma
    // ramp along x (about 0.86 per pixel once converted) and U rising from
    // left to right.
    let picture = report.picture.expect("a decoded picture");
    let row = 200 * picture.width;
    let steps: Vec<i32> = (0..picture.width - 8)
        .step_by(8)
        .map(|x| i32::from(picture.y[row + x + 8]) - i32::from(picture.y[row + x]))
        .collect();
    let ramp = steps.iter().filter(|d| (4..=10).contains(*d)).count();
    assert!(ramp * 10 >= steps.len() * 8, "a luma ramp: {steps:?}");
    let (_, u_left, _) = picture.mean(8, 100, 32, 32);
    let (_, u_right, _) = picture.mean(600, 100, 32, 32);
    assert!(u_left < 100.0 && u_right > 130.0, "U {u_left} .. {u_right}");

    let starts = fake.video_starts();
    assert_eq!(
        starts.len(),
        1,
        "one rpicam-vid, never restarted: {starts:?}"
    );
    let argv = &starts[0].argv;
    for (opt, value) in [
        ("--codec", "yuv420"),
        ("--width", "640"),
        ("--height", "360"),
        ("--framerate", fps),
        ("--camera", "0"),
    ] {
        assert!(has_opt(argv, opt, value), "{opt} {value} in {argv:?}");
    }
    assert!(
        has_opt(argv, "--output", "-") || has_opt(argv, "-o", "-"),
        "to stdout: {argv:?}"
    );
    terminate_and_check_children(&mut server, &fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_rpicam_vid_is_started_again_and_video_continues() {
    let fake = Fake::new("crash");
    let log = fake.log_path();
    let (fps, exit_after) = if emulated() { ("15", 20) } else { ("30", 45) };
    let exit_after_s = exit_after.to_string();
    let mut server = Server::start_with_env(
        &["--source", "rpicam", "--size", "640x360", "--fps", fps],
        &[
            ("PATH", &fake.path),
            ("RTCAM_FAKE_RPICAM_LOG", &log),
            ("RTCAM_FAKE_RPICAM_EXIT_AFTER", &exit_after_s),
        ],
    );
    let status = rpicam_status(&server).await;
    assert_eq!(status["source"]["kind"], "rpicam", "{status}");

    // More stamped frames than one life of the child has: some must come
    // from a second rpicam-vid.
    let mut client = Client::new();
    whep_connect(&server, &mut client).await;
    let want = exit_after + exit_after / 2;
    let limit = Duration::from_secs(if emulated() { 90 } else { 30 });
    let report = tokio::task::spawn_blocking(move || client.run(want, limit, false))
        .await
        .unwrap();
    eprintln!(
        "rpicam crash: {} frames, {} decoded, {} stamped, {} unstamped (the camera-lost slate)",
        report.frames, report.decoded, report.stamped, report.unstamped
    );
    assert!(report.connected);
    assert!(report.stamped >= want, "{report:?}");

    let starts = fake.video_starts();
    assert!(starts.len() >= 2, "rpicam-vid started again: {starts:?}");
    assert_eq!(
        fake.exit_of(starts[0].pid).as_deref(),
        Some("crash"),
        "the first one crashed"
    );
    let second = starts[1].time_ms;
    let after = report.stamps.iter().filter(|&&s| s > second).count();
    assert!(
        after > 0,
        "stamped frames from the second rpicam-vid (started at {second}): {:?}",
        report.stamps
    );
    assert!(
        server.log_shows("simulated crash"),
        "rpicam-vid's stderr reaches rtcam's log:\n{}",
        server.log()
    );
    terminate_and_check_children(&mut server, &fake);
}

/// An Annex B stream made as a camera's encoder would: the stamped,
/// camera-like scene at 640x360 (colour bars under emulation, cheaper to
/// encode), openh264 constrained baseline, an IDR every 30 frames (SPS and
/// PPS in front), `frames` frames at 30 fps. The stripe is in the pictures:
/// a viewer decodes it from the passed-through stream.
fn camera_h264(frames: u64) -> Vec<u8> {
    use rtcam::capture::pattern::{Look, TestPattern};
    use rtcam::capture::scene::Scene;
    use rtcam::encode::openh264::OpenH264;
    use rtcam::encode::{Encoder, EncoderSettings};
    use rtcam::frame::RawFrame;
    let (w, h) = (640usize, 360usize);
    let settings = EncoderSettings {
        width: w as u32,
        height: h as u32,
        fps: 30,
        bitrate_kbps: EncoderSettings::default_bitrate_kbps(w as u32, h as u32, 30),
        threads: 1,
        slice_bytes: rtcam::encode::DEFAULT_SLICE_BYTES,
    };
    let mut encoder = Encoder::new(Box::new(OpenH264::new(settings).expect("openh264")));
    let scene = (!emulated()).then(|| Scene::new(w, h));
    let mut bars = TestPattern::new(w, h, 1000, Look::Bars).expect("bars");
    let mut frame = RawFrame::black(w, h);
    let t0 = frame.captured;
    let (mut out, mut idrs) = (Vec::new(), 0);
    for n in 0..frames {
        match &scene {
            Some(scene) => scene.draw(&mut frame, n, now_ms()),
            None => bars.next_frame(&mut frame),
        }
        // The encoder's keyframe throttle runs on capture times: 30 fps.
        frame.captured = t0 + Duration::from_millis(n * 1000 / 30);
        if n > 0 && n % 30 == 0 {
            encoder.request_keyframe();
        }
        if let Some(unit) = encoder.encode(&frame).expect("encodes") {
            idrs += unit.keyframe as u64;
            out.extend_from_slice(&unit.data);
        }
    }
    assert_eq!(idrs, frames.div_ceil(30), "an IDR every 30 frames");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpicam_vids_own_h264_is_passed_through_to_a_whep_viewer() {
    let fake = Fake::new("h264");
    let log = fake.log_path();
    let stream = camera_h264(60);
    // profile_idc, the constraint flags and level_idc follow the SPS's
    // header byte.
    let at = stream
        .windows(5)
        .position(|w| w[..4] == [0, 0, 0, 1] && w[4] & 0x1f == 7)
        .expect("an SPS");
    let sps = &stream[at + 5..at + 8];
    let id = format!("{:02x}{:02x}{:02x}", sps[0], sps[1], sps[2]);
    // Constrained baseline: profile 66 with constraint_set1 (openh264
    // writes 42c0xx).
    assert!(
        sps[0] == 0x42 && sps[1] & 0x40 != 0,
        "openh264's constrained baseline: {id}"
    );
    let file = std::env::temp_dir().join(format!(
        "rtcam-it-rpicam-{}-camera.h264",
        std::process::id()
    ));
    std::fs::write(&file, &stream).unwrap();
    let file_s = file.display().to_string();
    let mut server = Server::start_with_env(
        &[
            "--source",
            "rpicam",
            "--capture-format",
            "h264",
            "--size",
            "640x360",
            "--fps",
            "30",
        ],
        &[
            ("PATH", &fake.path),
            ("RTCAM_FAKE_RPICAM_LOG", &log),
            ("RTCAM_FAKE_RPICAM_H264", &file_s),
        ],
    );
    let status = rpicam_status(&server).await;
    let source = &status["source"];
    assert_eq!(source["kind"], "rpicam", "{status}");
    assert_eq!(source["format"], "H264", "{status}");
    assert_eq!(source["passthrough"], id.as_str(), "{status}");
    assert_eq!(source["full_range"], false, "{status}");
    assert!(
        source["why"]
            .as_str()
            .is_some_and(|w| w.contains("passthrough")),
        "{status}"
    );

    let mut client = Client::new();
    whep_connect(&server, &mut client).await;
    let limit = Duration::from_secs(if emulated() { 60 } else { 20 });
    let report = tokio::task::spawn_blocking(move || client.run_decoded(60, limit))
        .await
        .unwrap();
    eprintln!(
        "rpicam h264: {} frames, {} decoded, {} stamped, first after {:?}",
        report.frames, report.decoded, report.stamped, report.first_frame_after
    );
    assert!(report.connected);
    assert!(report.decoded >= 60, "{report:?}");
    assert_eq!(report.sizes, vec![(640, 360)]);
    // The stamps are the file's (drawn when it was made, looping), but
    // each decoded picture's stripe must read.
    assert!(
        report.stamped * 10 >= report.decoded * 9,
        "the stripe survives: {} of {} stamped",
        report.stamped,
        report.decoded
    );
    // A new viewer waits for the next IDR: at most a second (--intra).
    let first = report.first_frame_after.expect("a first frame");
    assert!(
        first < Duration::from_secs(if emulated() { 10 } else { 4 }),
        "first frame after {first:?}"
    );

    assert!(
        !server.log_shows("H.264 passthrough: "),
        "the stream went through whole:\n{}",
        server.log()
    );
    let status = server.status().await;
    let encoders = status["encoders"].as_array().cloned().unwrap_or_default();
    assert!(
        encoders.iter().any(|e| e["implementation"]
            .as_str()
            .is_some_and(|i| i.contains("passthrough"))),
        "the passthrough forwarder ran: {status}"
    );

    let starts = fake.video_starts();
    assert_eq!(starts.len(), 1, "one rpicam-vid: {starts:?}");
    let argv = &starts[0].argv;
    for (opt, value) in [
        ("--codec", "h264"),
        ("--width", "640"),
        ("--height", "360"),
        ("--framerate", "30"),
        ("--intra", "30"),
        ("--profile", "baseline"),
        ("--level", "4.1"),
    ] {
        assert!(has_opt(argv, opt, value), "{opt} {value} in {argv:?}");
    }
    assert!(argv.iter().any(|a| a == "--inline"), "--inline in {argv:?}");
    assert!(argv.iter().any(|a| a == "--flush"), "--flush in {argv:?}");
    let h264 = fake
        .events()
        .into_iter()
        .filter(|e| e.event == "h264")
        .count();
    assert_eq!(h264, 1, "the stand-in took the H.264 options");
    terminate_and_check_children(&mut server, &fake);
    let _ = std::fs::remove_file(&file);
}

/// `auto` takes a CSI camera first when rpicam-vid lists one, and runs the
/// listing once to open it; with none listed it goes on to V4L2 and then
/// the test pattern, and the log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_prefers_a_csi_camera_and_lists_cameras_once() {
    let fake = Fake::new("auto");
    let log = fake.log.display().to_string();
    let server = Server::start_with_env(
        &["--source", "auto", "--size", "640x360"],
        &[("PATH", &fake.path), ("RTCAM_FAKE_RPICAM_LOG", &log)],
    );
    let status = server.status().await;
    assert_eq!(status["source"]["kind"], "rpicam", "{status}");
    let listings = std::fs::read_to_string(&fake.log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("--list-cameras"))
        .count();
    assert_eq!(listings, 1, "one listing to open the camera");
    drop(server);

    let fake = Fake::new("auto-none");
    let server = Server::start_with_env(
        &["--source", "auto", "--size", "640x360"],
        &[("PATH", &fake.path), ("RTCAM_FAKE_RPICAM_CAMERAS", "0")],
    );
    let status = server.status().await;
    let kind = status["source"]["kind"].as_str().unwrap_or("").to_string();
    // No V4L2 camera on a test machine: the pattern (a host with a webcam
    // would pick it, which is right too).
    assert!(
        kind == "test-scene" || kind == "test-bars" || kind == "v4l2",
        "{status}"
    );
    assert!(server.log_shows("CSI camera 0"), "{}", server.log());
}

/// rpicam-vid's image options as controls: a viewer sets one on its data
/// channel, rtcam restarts rpicam-vid with the option (stopping the old one
/// with SIGTERM), every viewer gets the new value, and video goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_restarts_rpicam_vid_with_its_option() {
    let fake = Fake::new("controls");
    let log = fake.log_path();
    let mut server = Server::start_with_env(
        &["--source", "rpicam", "--size", "640x360", "--fps", "15"],
        &[("PATH", &fake.path), ("RTCAM_FAKE_RPICAM_LOG", &log)],
    );
    assert_eq!(rpicam_status(&server).await["source"]["kind"], "rpicam");
    let operator = server.token("operator", true);
    let mut viewer = common::channels::ChannelViewer::join(server.http, &operator).await;
    let controls = viewer
        .wait_type("controls", Duration::from_secs(15))
        .expect("the controls");
    let list = controls["controls"].as_array().unwrap();
    let ids: Vec<&str> = list.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(
        ids,
        [
            "brightness",
            "contrast",
            "saturation",
            "sharpness",
            "ev",
            "shutter",
            "gain",
            "awb",
            "denoise"
        ]
    );
    assert!(list.iter().all(|c| c["restarts"] == true));
    let first = starts_within(&fake, 1);
    assert_eq!(first.len(), 1);
    viewer.send(r#"{"type":"set","control":"brightness","value":-25}"#);
    let applied = viewer.wait_for(Duration::from_secs(15), |m| {
        m["type"] == "controls" && m["controls"][0]["value"] == -25
    });
    assert!(applied.is_some(), "seen {:?}", viewer.seen);
    let starts = starts_within(&fake, 2);
    assert_eq!(starts.len(), 2, "restarted once");
    assert!(
        has_opt(&starts[1].argv, "--brightness", "-0.25"),
        "{:?}",
        starts[1].argv
    );
    assert_eq!(fake.exit_of(first[0].pid).as_deref(), Some("sigterm"));
    let frames = viewer.frames.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        viewer.frames.load(std::sync::atomic::Ordering::Relaxed) > frames,
        "video goes on after the restart"
    );
    drop(viewer);
    terminate_and_check_children(&mut server, &fake);
}

/// The stand-in's video starts once there are `n` (it logs a moment after
/// rtcam spawned it), or what there are after 10 s.
fn starts_within(fake: &Fake, n: usize) -> Vec<Event> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let starts = fake.video_starts();
        if starts.len() >= n || Instant::now() >= until {
            return starts;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
