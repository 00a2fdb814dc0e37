//! A standard WHEP player's view: POST an offer, get video, trickle, leave.

mod common;

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
