//! A standard WHEP player's view: POST an offer, get video, trickle, leave.

use crate::common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_viewer_receives_stamped_720p_video() {
    let server = Server::start(&["--size", "1280x720", "--fps", "30"]);
    let mut client = Client::new();
    let location = whep_connect(&server, &mut client).await;
    assert!(location.starts_with("/whep/"), "{location}");
    let patch = whep_trickle(&server, &location, &client).await;
    assert_eq!(patch.status, 204, "{patch:?}");

    let report =
        tokio::task::spawn_blocking(move || client.run(60, Duration::from_secs(20), false))
            .await
            .unwrap();
    eprintln!(
        "WHEP: {} frames, {} decoded, {} stamped, first after {:?}, latency p50 {:?} ms",
        report.frames,
        report.decoded,
        report.stamped,
        report.first_frame_after,
        report.latency_p50()
    );
    assert!(report.connected);
    assert!(report.stamped >= 60, "{report:?}");
    assert_eq!(report.sizes, vec![(1280, 720)]);
    assert_eq!(
        report.unstamped, 0,
        "every decoded frame carries a valid stripe"
    );
    // Stamps are strictly increasing: every frame has its own time.
    assert!(
        report.stamps.windows(2).all(|w| w[0] < w[1]),
        "{:?}",
        report.stamps
    );

    let del = server.https("DELETE", &location, None, b"").await;
    assert_eq!(del.status, 200);
    let again = server.https("DELETE", &location, None, b"").await;
    assert_eq!(again.status, 404);
    assert_eq!(server.status().await["viewers"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_rejects_bad_requests_with_the_right_status() {
    let server = Server::start(&["--size", "640x360", "--max-viewers", "1"]);

    let r = server
        .https("POST", "/whep", Some("text/plain"), b"v=0")
        .await;
    assert_eq!(r.status, 415, "{r:?}");

    let r = server
        .https("POST", "/whep", Some("application/sdp"), b"hello")
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("malformed SDP offer"), "{}", r.body);
    assert!(!r.body.contains("PointerOffset"), "{}", r.body);

    let big = vec![b'a'; 1 << 20];
    let r = server
        .https("POST", "/whep", Some("application/sdp"), &big)
        .await;
    assert_eq!(r.status, 413, "{r:?}");

    let r = server
        .https(
            "PATCH",
            "/whep/0000000000000001",
            Some("application/trickle-ice-sdpfrag"),
            b"a=candidate:1 1 udp 1 1.2.3.4 5 typ host",
        )
        .await;
    assert_eq!(r.status, 404);
    let r = server.https("DELETE", "/whep/nonsense", None, b"").await;
    assert_eq!(r.status, 404);

    // One viewer fills it; the next is told to come back later.
    let mut first = Client::new();
    let location = whep_connect(&server, &mut first).await;
    let second = Client::new();
    let r = server
        .https(
            "POST",
            "/whep",
            Some("application/sdp"),
            second.offer.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("maximum of 1 viewers"), "{}", r.body);
    assert!(r.header("retry-after").is_some());

    let r = server
        .https("PATCH", &location, Some("application/sdp"), b"a=x")
        .await;
    assert_eq!(r.status, 415);
    let r = server
        .https(
            "PATCH",
            &location,
            Some("application/trickle-ice-sdpfrag"),
            b"garbage",
        )
        .await;
    assert_eq!(r.status, 400);

    // The server still serves: the first viewer gets its video.
    let report = tokio::task::spawn_blocking(move || first.run(30, Duration::from_secs(15), true))
        .await
        .unwrap();
    assert!(report.stamped >= 30, "{report:?}");
}

/// Ten thousand candidates trickled into one WHEP session: the first 32 are
/// taken, the rest refused with a reason, each PATCH at most 16, and the
/// media task stays quick for everyone (before: unbounded, PATCH 90 -> 700 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_candidates_is_refused_past_the_cap() {
    let server = Server::start(&["--size", "640x360"]);
    let mut client = Client::new();
    let location = whep_connect(&server, &mut client).await;
    let frag = |from: usize, n: usize| {
        let mut f = String::from(
            "a=ice-ufrag:x\r\na=ice-pwd:y\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n",
        );
        for i in from..from + n {
            f.push_str(&format!(
                "a=candidate:{i} 1 udp 2122260223 10.{}.{}.{} 5000 typ host\r\n",
                i / 65536 % 256,
                i / 256 % 256,
                i % 256
            ));
        }
        f
    };
    let sdpfrag = Some("application/trickle-ice-sdpfrag");
    let r = server
        .https("PATCH", &location, sdpfrag, frag(0, 17).as_bytes())
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("at most 16"), "{}", r.body);
    let mut accepted = 0;
    let mut slowest = std::time::Duration::ZERO;
    for batch in 0..625 {
        let t = std::time::Instant::now();
        let r = server
            .https("PATCH", &location, sdpfrag, frag(batch * 16, 16).as_bytes())
            .await;
        slowest = slowest.max(t.elapsed());
        match r.status {
            204 => accepted += 16,
            400 => {
                assert!(r.body.contains("too many ICE candidates"), "{}", r.body);
                break;
            }
            other => panic!("PATCH {batch}: {other} {r:?}"),
        }
    }
    eprintln!("accepted {accepted} candidates; slowest PATCH {slowest:?}");
    assert_eq!(accepted, 32, "two PATCHes of 16, then refused");
    // The session itself still works: the client connects and gets video.
    let report = tokio::task::spawn_blocking(move || {
        client.run_decoded(5, std::time::Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert!(report.decoded >= 5, "{report:?}");
}

/// A WHEP session belongs to the token that made it: another token cannot
/// PATCH or DELETE it (answered as if it did not exist), and revoking the
/// token ends the session within a couple of seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whep_session_belongs_to_its_token_and_ends_with_it() {
    let server = Server::start(&["--size", "640x360"]);
    let dir = server.state_dir.display().to_string();
    let (ok, other, err) = rtcam_command(&["token", "create", "other", "--state-dir", &dir], "");
    assert!(ok, "{err}");
    let mut client = Client::new();
    let location = whep_connect(&server, &mut client).await;
    let as_other = |method: &'static str, ct: Option<&'static str>, body: &'static [u8]| {
        let auth = format!("Bearer {}", other.trim());
        let location = location.clone();
        let http = server.http;
        async move {
            let mut headers = vec![("Authorization", auth.as_str())];
            if let Some(ct) = ct {
                headers.push(("Content-Type", ct));
            }
            https_raw(http, method, &location, &headers, body).await
        }
    };
    let frag: &'static [u8] =
        b"a=ice-ufrag:x\r\na=ice-pwd:y\r\na=candidate:1 1 udp 1 10.1.1.1 5 typ host\r\n";
    let r = as_other("PATCH", Some("application/trickle-ice-sdpfrag"), frag).await;
    assert_eq!(r.status, 404, "{r:?}");
    let r = as_other("DELETE", None, b"").await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(server.status().await["viewers"], 1, "still there");

    let watching =
        std::thread::spawn(move || client.run(usize::MAX, Duration::from_secs(20), false));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ok, _, err) = rtcam_command(&["token", "revoke", "tests", "--state-dir", &dir], "");
    assert!(ok, "{err}");
    let revoked = std::time::Instant::now();
    while server.status_with(&other).await["viewers"] != 0 {
        assert!(
            revoked.elapsed() < Duration::from_secs(5),
            "{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "session ended {:?} after its token was revoked",
        revoked.elapsed()
    );
    assert!(
        server.log_shows("token 'tests' was revoked"),
        "{}",
        server.log()
    );
    assert!(
        server.log_shows("its token was revoked"),
        "{}",
        server.log()
    );
    let report = watching.join().unwrap();
    assert!(report.frames > 0, "it was watching: {report:?}");
}

/// `/metrics` (bearer token) in the Prometheus text format: the appliance's
/// counters, and per viewer its link as str0m reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_the_appliance_and_each_viewers_link() {
    let server = Server::start(&["--size", "640x360"]);
    let r = https_raw(server.http, "GET", "/metrics", &[], b"").await;
    assert_eq!(r.status, 401, "not without credentials");
    let mut client = Client::new();
    whep_connect(&server, &mut client).await;
    let watching = std::thread::spawn(move || client.run(90, Duration::from_secs(20), false));
    let until = std::time::Instant::now() + Duration::from_secs(15);
    let text = loop {
        let r = server.https("GET", "/metrics", None, b"").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("text/plain; version=0.0.4"))
        );
        if r.body.contains("rtcam_viewer_sent_bytes_total{")
            && r.body.contains("rtcam_viewer_rtt_seconds{")
        {
            break r.body;
        }
        assert!(
            std::time::Instant::now() < until,
            "no per-viewer link stats:\n{}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for family in [
        "rtcam_viewers 1",
        "# TYPE rtcam_frames_captured_total counter",
        "rtcam_encoder_bitrate_kbps{codec=\"H.264\"",
        "rtcam_camera_up{",
        "rtcam_limit_hits_total{kind=\"connection_refused\"} 0",
    ] {
        assert!(text.contains(family), "missing {family}:\n{text}");
    }
    // Every line is a comment or `name{labels} value` with a number.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap_or("");
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    // Over a real socket too, no datagram is over the default MTU (and
    // media went out in packets of some size).
    let largest: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("rtcam_datagram_max_bytes "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rtcam_datagram_max_bytes:\n{text}"));
    assert!(
        (500.0..=common::MTU as f64).contains(&largest),
        "largest datagram {largest} bytes"
    );
    promtool_accepts(&text);
    let _ = watching.join();
}

/// Prometheus' own checker (`promtool check metrics`: the format and its
/// lints), when the suite provides it: `scripts/test.sh` sets RTCAM_PROMTOOL
/// (setup.sh takes promtool out of Debian's prometheus package).
fn promtool_accepts(text: &str) {
    let Some(promtool) = std::env::var_os("RTCAM_PROMTOOL") else {
        eprintln!("RTCAM_PROMTOOL not set: promtool check skipped");
        return;
    };
    let mut cmd = std::process::Command::new(promtool);
    cmd.args(["check", "metrics"]);
    let (ok, out, err) = run_with_stdin(cmd, text);
    assert!(ok, "promtool check metrics: {out}{err}\n{text}");
}
