//! Ten viewers at once, one encoder: everybody gets every frame.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_viewers_each_get_the_full_rate_from_one_encoder() {
    // Eleven H.264 codecs (one encoder, ten decoders) share this machine;
    // under qemu-user they keep up with 10 fps, natively with 30.
    let rate: u64 = if emulated() { 10 } else { 30 };
    let want = 4 * rate as usize;
    let server = Server::start(&[
        "--size",
        "640x360",
        "--fps",
        &rate.to_string(),
        "--max-viewers",
        "10",
        "--max-viewers-per-address",
        "10",
    ]);
    let mut clients = Vec::new();
    for _ in 0..10 {
        let mut c = Client::new();
        whep_connect(&server, &mut c).await;
        clients.push(c);
    }
    // Each viewer counts what it receives for 4 s after it connects.
    let handles: Vec<_> = clients
        .into_iter()
        .map(|c| std::thread::spawn(move || c.run(want, Duration::from_secs(10), true)))
        .collect();
    let reports: Vec<Report> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, r) in reports.iter().enumerate() {
        let span = r.stamps.last().unwrap_or(&0) - r.stamps.first().unwrap_or(&0);
        let fps = (r.stamps.len().saturating_sub(1)) as f64 * 1000.0 / span.max(1) as f64;
        eprintln!(
            "viewer {i}: {} stamped frames, {fps:.1} fps over {span} ms",
            r.stamped
        );
        assert_eq!(r.sizes, vec![(640, 360)]);
        assert!(r.stamped >= want, "viewer {i}: {r:?}");
        // Full rate: 4 s of consecutive frames; a viewer missing frames
        // would see gaps of two frame intervals or more between stamps.
        let gap = 2 * 1000 / rate + 4;
        let gaps = r.stamps.windows(2).filter(|w| w[1] - w[0] > gap).count();
        assert!(gaps <= 3, "viewer {i} missed frames: {gaps} gaps");
    }
    // One encoder: the viewers saw the very same frames (same stamps).
    let sets: Vec<HashSet<u64>> = reports
        .iter()
        .map(|r| r.stamps.iter().copied().collect())
        .collect();
    let common_stamps = sets.iter().skip(1).fold(sets[0].clone(), |acc, s| &acc & s);
    assert!(
        common_stamps.len() >= want / 2,
        "shared frames: {}",
        common_stamps.len()
    );
    assert_eq!(server.log().matches("H.264 encoder started").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eleventh_viewer_is_refused_clearly() {
    let server = Server::start(&["--size", "640x360", "--max-viewers", "2"]);
    let mut a = Client::new();
    let mut b = Client::new();
    whep_connect(&server, &mut a).await;
    whep_connect(&server, &mut b).await;
    let c = Client::new();
    let r = server
        .https("POST", "/whep", Some("application/sdp"), c.offer.as_bytes())
        .await;
    assert_eq!(r.status, 503);
    let mut ws = server.ws().await;
    use futures_util::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        serde_json::json!({"type":"offer","sdp": c.offer})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let msg = ws.next().await.unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
    assert_eq!(v["type"], "error");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("maximum of 2 viewers"),
        "{v}"
    );
}
