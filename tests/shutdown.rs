//! SIGTERM, as systemd sends it on `systemctl stop`: rtcam tells its
//! viewers, closes its sockets and exits cleanly, well inside the unit's
//! TimeoutStopSec (5 s) after which systemd would kill it.

use crate::common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_viewers_and_exits_cleanly() {
    let mut server = Server::start(&["--size", "640x360", "--fps", "30"]);
    let mut client = Client::new();
    whep_connect(&server, &mut client).await;
    let (http, rtc) = (server.http, server.rtc);

    // The viewer watches until the video ends (or 30 s pass).
    let viewer = std::thread::spawn(move || {
        let report = client.run(usize::MAX, Duration::from_secs(30), false);
        (report, Instant::now())
    });
    let until = Instant::now() + Duration::from_secs(20);
    while server.status().await["viewers"] != 1 || !server.log_shows("viewer connected") {
        assert!(
            Instant::now() < until,
            "viewer never connected:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (status, took) = server.terminate();
    let stopped_at = Instant::now();
    eprintln!("rtcam stopped {took:?} after SIGTERM ({status})");
    assert!(status.success(), "exit status {status}");
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}: systemd would have killed it"
    );
    assert!(server.log_shows("shutting down"), "{}", server.log());
    assert!(
        server.log_shows("viewer left: the camera is shutting down"),
        "{}",
        server.log()
    );

    let (report, ended_at) = viewer.join().unwrap();
    eprintln!(
        "viewer: {} frames, ended {:?} after rtcam exited",
        report.decoded,
        ended_at.saturating_duration_since(stopped_at)
    );
    assert!(report.decoded > 0, "{report:?}");
    // Told: DTLS close_notify ends its session at once, not an ICE timeout.
    assert!(
        ended_at.saturating_duration_since(stopped_at) < Duration::from_secs(5),
        "the viewer only found out by timing out"
    );

    // The sockets are closed: the ports can be bound again.
    assert!(
        std::net::TcpListener::bind(http).is_ok(),
        "TCP {http} still bound"
    );
    assert!(
        std::net::UdpSocket::bind(rtc).is_ok(),
        "UDP {rtc} still bound"
    );
}

/// A panic in the media task (injected: `RTCAM_FAULT`, debug builds only)
/// must not leave a page with no camera behind it: rtcam says why and exits
/// non-zero, so systemd starts it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_task_panic_makes_the_process_exit_non_zero() {
    let mut server = Server::start_with_env(
        &["--size", "640x360"],
        &[("RTCAM_FAULT", "media-task-panic")],
    );
    let until = Instant::now() + Duration::from_secs(20);
    while server.still_running() {
        assert!(Instant::now() < until, "still running:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = server.exit_status().expect("exited");
    eprintln!("exit status: {status:?}");
    assert!(!status.success(), "exit status {status}");
    assert!(
        server.log_shows("the media task panicked: injected fault: media-task-panic"),
        "{}",
        server.log()
    );
}
