//! A camera setting a viewer makes is kept in the state dir and applied
//! again when rtcam starts next (the same camera model: here the test
//! scene), and a watch-only token cannot make one.

use crate::common;

use std::time::Duration;

use common::channels::ChannelViewer;
use common::{Server, free_port, https_raw, rtcam};

fn brightness(status: &serde_json::Value) -> Option<i64> {
    status["source"]["controls"]
        .as_array()?
        .iter()
        .find(|c| c["id"] == "brightness")?["value"]
        .as_i64()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_setting_survives_a_restart_and_a_watch_only_token_cannot_make_one() {
    let mut server = Server::start(&["--size", "640x360"]);
    let state = server.state_dir.display().to_string();
    let watcher = server.token("hall", false);
    let operator = server.token("desk", true);

    let mut hall = ChannelViewer::join(server.http, &watcher).await;
    let controls = hall.wait_type("controls", Duration::from_secs(10)).unwrap();
    assert_eq!(controls["may_set"], false);
    hall.send(r#"{"type":"set","control":"brightness","value":40}"#);
    assert_eq!(
        hall.wait_type("error", Duration::from_secs(10)).unwrap()["reason"],
        "not_allowed"
    );

    let mut desk = ChannelViewer::join(server.http, &operator).await;
    assert_eq!(
        desk.wait_type("controls", Duration::from_secs(10)).unwrap()["may_set"],
        true
    );
    desk.send(r#"{"type":"set","control":"brightness","value":40}"#);
    let told = hall.wait_for(Duration::from_secs(10), |m| {
        m["type"] == "controls" && m["controls"][0]["value"] == 40
    });
    assert!(told.is_some(), "the watcher sees the change too");
    assert_eq!(brightness(&server.status().await), Some(40));
    drop((hall, desk));
    let (status, _) = server.terminate();
    assert!(status.success());

    // rtcam again, on the same state dir.
    let http = format!("127.0.0.1:{}", free_port());
    let rtc = format!("127.0.0.1:{}", free_port());
    let mut again = rtcam()
        .args([
            "--source", "test", "--size", "640x360", "--http", &http, "--rtc", &rtc,
        ])
        .args(["--state-dir", &state])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let auth = format!("Bearer {}", server.token.trim());
    let mut kept = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(addr) = http.parse() else { break };
        let r = https_raw_quiet(addr, &auth).await;
        // The first status has no controls yet: they come once the
        // camera is open.
        kept = r.and_then(|v| brightness(&v));
        if kept.is_some() {
            break;
        }
    }
    let _ = again.kill();
    let _ = again.wait();
    assert_eq!(kept, Some(40), "restored from controls.json");
}

/// `/api/status` once the server answers (None while it is starting).
async fn https_raw_quiet(addr: std::net::SocketAddr, auth: &str) -> Option<serde_json::Value> {
    if std::net::TcpStream::connect(addr).is_err() {
        return None;
    }
    let r = https_raw(addr, "GET", "/api/status", &[("Authorization", auth)], b"").await;
    (r.status == 200).then(|| serde_json::from_str(&r.body).ok())?
}
