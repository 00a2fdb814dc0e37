//! A camera that is not there when rtcam starts is not a failure: rtcam
//! serves its page, says the camera is lost, sends viewers the "camera
//! lost" slate, and keeps looking (capture::supervise).

use crate::common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_without_the_camera_serves_the_slate_and_keeps_looking() {
    let server = Server::start(&["--source", "/dev/video-unplugged", "--size", "640x360"]);
    let status = server.status().await;
    let source = &status["source"];
    assert_eq!(source["state"], "lost", "{status}");
    assert!(
        source["problem"]
            .as_str()
            .is_some_and(|p| p.contains("/dev/video-unplugged")),
        "{status}"
    );

    let mut client = Client::new();
    let location = whep_connect(&server, &mut client).await;
    let report =
        tokio::task::spawn_blocking(move || client.run_decoded(5, Duration::from_secs(30)))
            .await
            .unwrap();
    assert!(report.connected, "{report:?}");
    assert!(
        report.decoded >= 5,
        "slate frames decoded: {}",
        report.decoded
    );
    assert_eq!(report.sizes, vec![(640, 360)], "the size asked for");
    assert_eq!(report.stamped, 0, "the slate is not the test pattern");
    let picture = report.picture.expect("a picture");
    let (y, _, _) = picture.mean(0, 0, 64, 64);
    assert!(y < 70.0, "a dark slate, luma {y}");
    let del = server.https("DELETE", &location, None, b"").await;
    assert_eq!(del.status, 200);

    // Still looking, once a second, and the log says so without a flood.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let log = server.log();
    assert!(log.contains("is not there"), "{log}");
    let tries = log.matches("trying again").count();
    assert!(
        (1..=3).contains(&tries),
        "rate-limited: {tries} lines\n{log}"
    );
}
