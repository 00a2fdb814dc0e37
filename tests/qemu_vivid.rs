//! The whole appliance on an emulated arm64 board: rtcam runs inside
//! `qemu-system-aarch64` on Debian's kernel and captures from the kernel's
//! vivid driver through the V4L2 path; this test, on the host, is a WHEP
//! viewer through QEMU's port forwards. `scripts/qemu-test.sh` boots the
//! guest and runs it (it is ignored in a plain `cargo test`).

use crate::common;

use std::time::Duration;

use common::*;

/// The guest's wall clock minus the host's, ns, and how far off that may be:
/// the guest answers its CLOCK_REALTIME on the control port (the guest set
/// its clock from an RTC of whole seconds, so it is up to a second behind).
/// The guest reads its clock after starting a shell for the connection, so
/// the answer is dated at its arrival, later by at most the round trip.
/// QEMU's forward accepts before the guest's nc (restarted after each
/// command) does, so a reset or an empty answer is asked again.
fn guest_clock_offset() -> (i128, Duration) {
    let addr =
        std::env::var("RTCAM_QEMU_CONTROL").expect("RTCAM_QEMU_CONTROL: run scripts/qemu-test.sh");
    let mut last = String::new();
    for _ in 0..10 {
        let sent = std::time::Instant::now();
        match ask_guest(&addr, "clock") {
            Ok(answer) if !answer.trim().is_empty() => {
                let host = rtcam::audio::unix_ns();
                let round_trip = sent.elapsed();
                let guest: i128 = answer
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("clock: {answer:?}: {e}"));
                return (guest - host as i128, round_trip);
            }
            Ok(_) => last = "an empty answer".into(),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("the guest's control port did not answer \"clock\" in 10 tries: {last}");
}

/// One command on the guest's control port, its whole answer.
fn ask_guest(addr: &str, command: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.write_all(format!("{command}\n").as_bytes())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(answer)
}

/// A WHEP viewer through QEMU's forwards until `frames` decoded; its
/// resource (to DELETE) and what it saw.
async fn watch(server: &Server, frames: usize) -> (String, Report) {
    let mut client = Client::new();
    let location = whep_connect(server, &mut client).await;
    let patch = whep_trickle(server, &location, &client).await;
    assert_eq!(patch.status, 204, "{patch:?}");
    let report =
        tokio::task::spawn_blocking(move || client.run_decoded(frames, Duration::from_secs(60)))
            .await
            .unwrap();
    (location, report)
}

fn control_value(controls: &serde_json::Value, id: &str) -> Option<i64> {
    controls["controls"]
        .as_array()?
        .iter()
        .find(|c| c["id"] == id)?["value"]
        .as_i64()
}

/// vivid's brightness, set by a viewer on its `rtcam` data channel, is
/// applied by the driver (the picture's black bar gets lighter), shown in
/// `/api/status` and sent to the viewer as the fresh controls.
async fn brightness_over_the_data_channel(server: &Server, black_before: f64) {
    let mut viewer = channels::ChannelViewer::join(server.http, &server.token).await;
    let controls = viewer
        .wait_type("controls", Duration::from_secs(30))
        .expect("the controls message");
    eprintln!("vivid's controls: {controls}");
    assert_eq!(controls["may_set"], true, "the test's token has --control");
    let brightness = controls["controls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "brightness")
        .expect("vivid has a brightness control")
        .clone();
    assert_eq!(brightness["kind"], "integer");
    assert_eq!(
        (brightness["min"].as_i64(), brightness["max"].as_i64()),
        (Some(0), Some(255))
    );
    viewer.send(r#"{"type":"set","control":"brightness","value":220}"#);
    let applied = viewer.wait_for(Duration::from_secs(30), |m| {
        m["type"] == "controls" && control_value(m, "brightness") == Some(220)
    });
    assert!(applied.is_some(), "not applied; seen {:?}", viewer.seen);
    let status = server.status().await;
    assert_eq!(control_value(&status["source"], "brightness"), Some(220));
    let (location, report) = watch(server, 15).await;
    let picture = report.picture.expect("a decoded picture");
    let bar = picture.width / 8;
    let black = picture
        .mean(
            7 * bar + bar / 4,
            picture.height * 5 / 8,
            bar / 2,
            picture.height / 4,
        )
        .0;
    eprintln!("black bar's luma: {black_before:.0} at brightness 128, {black:.0} at 220");
    assert!(
        black > black_before + 40.0,
        "brightness 220 lightens the black bar: {black_before:.0} -> {black:.0}"
    );
    let del = server.https("DELETE", &location, None, b"").await;
    assert_eq!(del.status, 200);
    // Back to the default: the guest keeps settings in its state dir.
    viewer.send(r#"{"type":"set","control":"brightness","value":128}"#);
    let reset = viewer.wait_for(Duration::from_secs(30), |m| {
        m["type"] == "controls" && control_value(m, "brightness") == Some(128)
    });
    assert!(reset.is_some(), "reset to 128");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the QEMU guest that scripts/qemu-test.sh boots"]
async fn vivid_camera_in_an_arm64_guest_reaches_a_host_viewer() {
    let server = Server::attach("RTCAM_QEMU");

    // The V4L2 format and rate rtcam negotiated with the driver.
    let status = server.status().await;
    eprintln!("guest status: {status}");
    let source = &status["source"];
    assert_eq!(source["kind"], "v4l2", "{status}");
    assert_eq!(source["device"], "/dev/video0");
    assert_eq!(
        source["card"], "vivid",
        "the camera is the kernel's vivid driver"
    );
    // vivid offers YU12, rtcam's first choice (no conversion before the encoder).
    assert_eq!(source["format"], "YU12");
    assert_eq!(
        (source["width"].as_u64(), source["height"].as_u64()),
        (Some(640), Some(360))
    );
    assert_eq!(
        source["fps"], 15.0,
        "the rate the qemu-virt profile asks for"
    );

    let (location, report) = watch(&server, 45).await;
    eprintln!(
        "guest video: {} frames, {} decoded, {} stamped, first after {:?}",
        report.frames, report.decoded, report.stamped, report.first_frame_after
    );
    assert!(report.connected, "ICE/DTLS through the forward: {report:?}");
    assert!(report.decoded >= 45, "decoded {} of 45", report.decoded);
    assert_eq!(report.sizes, vec![(640, 360)]);
    // Not rtcam's own test pattern: no frame carries its timestamp stripe.
    assert_eq!(
        report.stamped, 0,
        "a stamped frame means the test source ran"
    );

    // The rate asked for, read off the sender's capture clock (RTP media
    // time, so it does not depend on how fast this machine emulates).
    let mut steps: Vec<f64> = report.media_times.windows(2).map(|w| w[1] - w[0]).collect();
    steps.sort_by(f64::total_cmp);
    let median = steps[steps.len() / 2];
    eprintln!(
        "median frame step {:.1} ms ({:.2} fps)",
        median * 1000.0,
        1.0 / median
    );
    assert!(
        (1.0 / median - 15.0).abs() < 1.0,
        "frames every {median} s, want 1/15 s"
    );

    // vivid's picture: its default 75% colour bars, eight of them, left to
    // right white, yellow, cyan, green, magenta, red, blue, black, so luma
    // falls from bar to bar. Sampled in the lower half (vivid writes its
    // text overlay at the top).
    let picture = report.picture.expect("a decoded picture");
    let pgm = std::env::temp_dir().join("rtcam-qemu-vivid.pgm");
    let _ = std::fs::write(&pgm, picture.to_pgm());
    eprintln!("last picture written to {}", pgm.display());
    let bar = picture.width / 8;
    let bars: Vec<(f64, f64, f64)> = (0..8)
        .map(|i| {
            picture.mean(
                i * bar + bar / 4,
                picture.height * 5 / 8,
                bar / 2,
                picture.height / 4,
            )
        })
        .collect();
    eprintln!("bars (Y, U, V): {bars:.0?}");
    for pair in bars.windows(2) {
        assert!(
            pair[0].0 > pair[1].0 + 8.0,
            "luma must fall bar to bar: {bars:.0?}"
        );
    }
    let neutral = |c: f64| (c - 128.0).abs() < 12.0;
    assert!(
        neutral(bars[0].1) && neutral(bars[0].2),
        "white bar is grey: {bars:.0?}"
    );
    assert!(bars[1].1 < 100.0, "yellow has little blue: {bars:.0?}");
    assert!(bars[2].2 < 100.0, "cyan has little red: {bars:.0?}");
    assert!(
        bars[4].1 > 150.0 && bars[4].2 > 150.0,
        "magenta: {bars:.0?}"
    );
    assert!(bars[6].1 > 150.0, "blue: {bars:.0?}");
    assert!(bars[7].0 < 30.0, "black: {bars:.0?}");

    let del = server.https("DELETE", &location, None, b"").await;
    assert_eq!(del.status, 200);
    brightness_over_the_data_channel(&server, bars[7].0).await;
    assert!(
        server.log_shows("video source: V4L2 /dev/video0 (vivid)"),
        "{}",
        server.log()
    );
}

/// One of the guest's v4l2loopback cameras (scripts/qemu-vivid.sh): a
/// feeder in the guest writes recorded frames of rtcam's stamped test
/// pattern (examples/loopback_frames.rs) as MJPEG or H.264 at 640x360
/// 15 fps, and an rtcam of its own reads them through V4L2 mmap streaming.
/// The stamps are old (recorded); that the stripe reads back on the host
/// says the picture came through MJPEG decode and re-encode, or passthrough,
/// intact.
async fn loopback_camera_reaches_a_host_viewer(prefix: &str, device: &str, format: &str) {
    let server = Server::attach(prefix);
    let status = server.status().await;
    eprintln!("guest status ({format}): {status}");
    let source = &status["source"];
    assert_eq!(source["kind"], "v4l2", "{status}");
    assert_eq!(source["device"], device, "{status}");
    assert_eq!(source["state"], "live", "{status}");
    assert_eq!(
        source["format"], format,
        "the camera's own format, forced: {status}"
    );
    assert_eq!(
        (source["width"].as_u64(), source["height"].as_u64()),
        (Some(640), Some(360)),
        "{status}"
    );
    assert_eq!(source["fps"], 15.0, "{status}");
    match format {
        "MJPG" => {
            assert_eq!(source["card"], "loopback-mjpeg", "{status}");
            assert_eq!(source["full_range"], true, "JFIF is full range: {status}");
            assert!(source["passthrough"].is_null(), "{status}");
        }
        _ => {
            assert_eq!(source["card"], "loopback-h264", "{status}");
            // The recording's SPS: openh264's constrained baseline, level 2.2.
            assert_eq!(source["passthrough"], "42c016", "{status}");
        }
    }

    let (location, report) = watch(&server, 30).await;
    eprintln!(
        "guest {format} video: {} frames, {} decoded, {} stamped, {} unstamped, sizes {:?}, first after {:?}",
        report.frames,
        report.decoded,
        report.stamped,
        report.unstamped,
        report.sizes,
        report.first_frame_after
    );
    assert!(report.connected, "ICE/DTLS through the forward: {report:?}");
    assert!(report.decoded >= 30, "decoded {} of 30", report.decoded);
    assert_eq!(report.sizes, vec![(640, 360)]);
    assert!(
        report.stamped * 10 >= report.decoded * 9,
        "the stripe must read back on most frames: {} of {}",
        report.stamped,
        report.decoded
    );
    let mut steps: Vec<f64> = report.media_times.windows(2).map(|w| w[1] - w[0]).collect();
    steps.sort_by(f64::total_cmp);
    let median = steps[steps.len() / 2];
    eprintln!(
        "median frame step {:.1} ms ({:.2} fps)",
        median * 1000.0,
        1.0 / median
    );
    if format == "H264" {
        // Passthrough: the camera's own rate.
        assert!(
            (1.0 / median - 15.0).abs() < 1.5,
            "frames every {median} s, want 1/15 s"
        );
    } else {
        // The debug build decodes a 640x360 JPEG in about 8 ms on an x86
        // host, several times that on the emulated board: it keeps up with
        // less than the camera's 15 fps there (v4l2loopback then hands the
        // reader the newest frame). A floor, not the rate.
        assert!(1.0 / median > 5.0, "frames every {median} s");
    }

    // The feeder cuts every 10th JPEG (and every 30th H.264 access unit) in
    // half, as a flaky USB link does: a cut JPEG is dropped and counted, a
    // cut access unit goes through (passthrough cannot know) and spoils at
    // most the frames up to the next IDR; the video goes on either way.
    let status = server.status().await;
    let corrupt = status["source"]["corrupt_frames"].as_u64().unwrap_or(0);
    eprintln!("corrupt frames dropped: {corrupt}");
    if format == "MJPG" {
        assert!(corrupt >= 1, "cut JPEGs are counted: {status}");
        assert!(
            server.log_shows("dropped a broken camera frame: JPEG truncated"),
            "{}",
            server.log()
        );
    } else {
        assert_eq!(corrupt, 0, "{status}");
    }
    let del = server.https("DELETE", &location, None, b"").await;
    assert_eq!(del.status, 200);
    let card = if format == "MJPG" {
        "loopback-mjpeg"
    } else {
        "loopback-h264"
    };
    assert!(
        server.log_shows(&format!(
            "video source: V4L2 {device} ({card}) 640x360 {format} @ 15.0 fps"
        )),
        "{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the QEMU guest that scripts/qemu-test.sh boots"]
async fn mjpeg_camera_in_an_arm64_guest_reaches_a_host_viewer() {
    loopback_camera_reaches_a_host_viewer("RTCAM_QEMU_MJPEG", "/dev/video1", "MJPG").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the QEMU guest that scripts/qemu-test.sh boots"]
async fn h264_camera_in_an_arm64_guest_reaches_a_host_viewer() {
    loopback_camera_reaches_a_host_viewer("RTCAM_QEMU_H264", "/dev/video2", "H264").await;
}

/// The guest's microphone is a real ALSA driver: snd-aloop, whose playback
/// side plays the audio stamp (tests/qemu/stamp-feed.c through aplay) and
/// whose capture side rtcam opens (`--audio-in plughw:Loopback,1,0`). A
/// WHEP player on the host hears it and reads every stamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the QEMU guest that scripts/qemu-test.sh boots"]
async fn snd_aloop_microphone_in_an_arm64_guest_reaches_a_host_player() {
    let server = Server::attach("RTCAM_QEMU");
    let player = audio_peer::AudioPeer::join(
        server.http,
        &server.token,
        str0m::media::Direction::RecvOnly,
    )
    .await;
    assert!(
        player.first_audio(Duration::from_secs(30)).await,
        "no audio from the guest\n{}",
        server.log()
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let metrics = server.https("GET", "/metrics", None, b"").await.body;
    let audio_counters: String = metrics
        .lines()
        .filter(|l| l.starts_with("rtcam_audio"))
        .collect::<Vec<_>>()
        .join("\n");
    let (offset_ns, uncertain) = tokio::task::spawn_blocking(guest_clock_offset)
        .await
        .unwrap();
    // The player dates a stamp against the guest's clock, which runs
    // `offset` ahead of the host's: the latency it reads is short by that.
    let offset_ms = offset_ns as f64 / 1e6;
    let latency: Vec<f64> = audio_peer::heard_increasing(
        &player.stamps_with_offset(offset_ms),
        6,
        &format!(
            "guest clock {offset_ms:+.1} ms\n{audio_counters}\n{}",
            server.log()
        ),
    );
    println!(
        "snd-aloop in the guest -> host player: {} stamps, latency p50 {:.1} ms, p95 {:.1} ms \
         (stamp-feed, aplay's 200 ms buffer, capture, Opus on an emulated CPU, QEMU's network; \
         the guest's clock, {offset_ms:+.1} ms off the host's, taken out to within {} ms)",
        latency.len(),
        audio_peer::percentile(&latency, 0.5),
        audio_peer::percentile(&latency, 0.95),
        uncertain.as_millis()
    );
    let status = server.https("GET", "/api/status", None, b"").await.body;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["audio"]["microphone"]["state"], "open", "{status}");
    assert_eq!(
        status["audio"]["microphone"]["device"],
        "plughw:Loopback,1,0"
    );
}
