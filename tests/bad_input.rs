//! Garbage, floods and vanishing peers: each gets its error or is cleaned
//! up, and another viewer's video never stops.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Starts a WHEP viewer that keeps receiving for `secs` in the background.
async fn background_viewer(server: &Server, secs: u64) -> tokio::task::JoinHandle<Report> {
    let mut client = Client::new();
    whep_connect(server, &mut client).await;
    tokio::task::spawn_blocking(move || client.run(usize::MAX, Duration::from_secs(secs), true))
}

/// The background viewer's video never stopped: no gap of a second between
/// frames, and on average at least 20 fps of the 30 sent over the window
/// (10 under qemu-user, where the viewer decodes on an emulated CPU).
fn assert_kept_flowing(report: &Report, secs: u64) {
    let floor = if emulated() { 10 } else { 20 };
    assert!(
        report.stamped as u64 >= floor * secs,
        "{} frames in {secs} s, want at least {floor} fps: {report:?}",
        report.stamped
    );
    let longest = report.stamps.windows(2).map(|w| w[1] - w[0]).max();
    assert!(
        longest.is_some_and(|g| g < 1000),
        "video stalled for {longest:?} ms"
    );
}

async fn reply(ws: &mut Ws) -> Option<serde_json::Value> {
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str(t.as_str()).ok(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_messages_get_errors_while_video_flows() {
    let server = Server::start(&["--size", "640x360", "--fps", "30"]);
    let watcher = background_viewer(&server, 6).await;
    tokio::time::sleep(Duration::from_millis(800)).await;

    let mut ws = server.ws().await;
    let garbage = [
        "".to_string(),
        "{".into(),
        "null".into(),
        r#"{"type":"offer"}"#.into(),
        r#"{"type":"offer","sdp":"this is not sdp"}"#.into(),
        r#"{"type":"candidate","candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host"}"#.into(),
        r#"{"type":"launch-missiles"}"#.into(),
        "\u{0}\u{1}binary-ish".into(),
    ];
    for g in &garbage {
        ws.send(Message::Text(g.clone().into())).await.unwrap();
        let r = reply(&mut ws)
            .await
            .unwrap_or_else(|| panic!("no reply to {g:?}"));
        assert_eq!(r["type"], "error", "{g:?} -> {r}");
        assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(reply(&mut ws).await.unwrap()["type"], "error");

    // Over our limit: an error, then the socket closes.
    let big = format!(r#"{{"type":"offer","sdp":"{}"}}"#, "v".repeat(100 * 1024));
    ws.send(Message::Text(big.into())).await.unwrap();
    let r = reply(&mut ws).await.expect("an error before closing");
    assert!(r["message"].as_str().unwrap().contains("too large"), "{r}");
    // Far over it: tungstenite refuses the frame and closes.
    let mut ws2 = server.ws().await;
    let huge = "x".repeat(4 << 20);
    let _ = ws2.send(Message::Text(huge.into())).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws2.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true));

    let report = watcher.await.unwrap();
    eprintln!(
        "viewer during abuse: {} stamped frames in 6 s",
        report.stamped
    );
    assert_kept_flowing(&report, 6);
    let mut s = server;
    assert!(s.still_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_vanishes_is_cleaned_up_and_others_keep_going() {
    let server = Server::start(&["--size", "640x360"]);
    let watcher = background_viewer(&server, 16).await;
    let mut ghost = Client::new();
    whep_connect(&server, &mut ghost).await;
    // Receives a little, then goes silent without hanging up.
    let r = tokio::task::spawn_blocking(move || ghost.run(10, Duration::from_secs(10), false))
        .await
        .unwrap();
    assert!(r.stamped >= 10);
    assert_eq!(server.status().await["viewers"], 2);
    let gone_at = Instant::now();
    let mut viewers = serde_json::Value::Null;
    while gone_at.elapsed() < Duration::from_secs(14) {
        viewers = server.status().await["viewers"].clone();
        if viewers == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(viewers, 1, "the silent viewer was removed");
    assert!(server.log_shows("viewer went silent"), "{}", server.log());
    let report = watcher.await.unwrap();
    assert_kept_flowing(&report, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_datagrams_on_the_media_port_change_nothing() {
    let server = Server::start(&["--size", "640x360"]);
    let watcher = background_viewer(&server, 4).await;
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..2000u32 {
        let len = (i as usize * 37) % 1400 + 1;
        let payload: Vec<u8> = (0..len).map(|j| (i as usize * 31 + j * 7) as u8).collect();
        let _ = junk.send_to(&payload, server.rtc);
    }
    let report = watcher.await.unwrap();
    assert_kept_flowing(&report, 4);
}
