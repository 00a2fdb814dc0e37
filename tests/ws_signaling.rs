//! The browser's path: offer, answer and trickle over secure WebSocket.

use crate::common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

async fn next_json(ws: &mut Ws) -> serde_json::Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message in time")
            .expect("socket open")
            .expect("no error");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).expect("server sends JSON");
        }
    }
}

async fn send(ws: &mut Ws, v: serde_json::Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_viewer_receives_stamped_video_and_hangs_up() {
    let server = Server::start(&["--size", "1280x720"]);
    let mut ws = server.ws().await;
    let mut client = Client::new();
    send(
        &mut ws,
        serde_json::json!({"type": "offer", "sdp": client.offer}),
    )
    .await;
    send(&mut ws, serde_json::json!({"type": "candidate", "candidate": client.candidate_line(), "sdpMid": "0", "sdpMLineIndex": 0})).await;
    send(
        &mut ws,
        serde_json::json!({"type": "candidate", "candidate": ""}),
    )
    .await;
    let answer = next_json(&mut ws).await;
    assert_eq!(answer["type"], "answer", "{answer}");
    let sdp = answer["sdp"].as_str().unwrap();
    assert!(sdp.contains("profile-level-id=42e01f"), "{sdp}");
    assert!(sdp.contains("a=ice-lite"), "{sdp}");
    client.accept_answer(sdp);

    let report =
        tokio::task::spawn_blocking(move || client.run(60, Duration::from_secs(20), false))
            .await
            .unwrap();
    eprintln!(
        "WS: {} stamped, first frame after {:?}",
        report.stamped, report.first_frame_after
    );
    assert!(report.stamped >= 60, "{report:?}");
    assert_eq!(report.sizes, vec![(1280, 720)]);
    assert_eq!(server.status().await["viewers"], 1);

    send(&mut ws, serde_json::json!({"type": "hangup"})).await;
    for _ in 0..50 {
        if server.status().await["viewers"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        server.status().await["viewers"],
        0,
        "hang-up removes the viewer"
    );
    // The same socket can call again.
    let again = Client::new();
    send(
        &mut ws,
        serde_json::json!({"type": "offer", "sdp": again.offer}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_socket_ends_the_call() {
    let server = Server::start(&["--size", "640x360"]);
    let mut ws = server.ws().await;
    let mut client = Client::new();
    send(
        &mut ws,
        serde_json::json!({"type": "offer", "sdp": client.offer}),
    )
    .await;
    let answer = next_json(&mut ws).await;
    client.accept_answer(answer["sdp"].as_str().unwrap());
    let report =
        tokio::task::spawn_blocking(move || client.run(10, Duration::from_secs(15), false))
            .await
            .unwrap();
    assert!(report.stamped >= 10);
    drop(ws);
    let mut viewers = serde_json::Value::Null;
    for _ in 0..50 {
        viewers = server.status().await["viewers"].clone();
        if viewers == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(viewers, 0);
}

/// A login, and a signaling socket opened with it.
async fn logged_in_socket(server: &Server) -> (String, Ws) {
    let cookie = server.login().await;
    let origin = format!("https://localhost:{}", server.http.port());
    let ws = ws_connect_with(server.http, &[("Cookie", &cookie), ("Origin", &origin)])
        .await
        .expect("websocket handshake");
    (cookie, ws)
}

/// A signaling socket lives only as long as its login: after logout it is
/// told so and closed (it used to go on working).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_ends_with_its_login() {
    let server = Server::start(&["--size", "640x360"]);
    let (cookie, mut ws) = logged_in_socket(&server).await;
    let r = https_raw(server.http, "POST", "/logout", &[("Cookie", &cookie)], b"").await;
    assert_eq!(r.status, 204, "{r:?}");
    let t = std::time::Instant::now();
    let msg = next_json(&mut ws).await;
    assert_eq!(msg["type"], "error", "{msg}");
    assert!(
        msg["message"]
            .as_str()
            .unwrap_or("")
            .contains("log in again"),
        "{msg}"
    );
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the socket closes");
    eprintln!("closed {:?} after logout", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(3));
}

/// WebSockets count against the connection limits for their whole life: 200
/// from one address get its share (32) and the rest are refused, while
/// another address is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_websockets_hold_only_their_share() {
    let server = Server::start(&["--size", "640x360"]);
    let cookie = server.login().await;
    let origin = format!("https://localhost:{}", server.http.port());
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        let tls = tls_connect_from(server.http, Some(std::net::IpAddr::from([127, 0, 3, 9]))).await;
        match ws_over(
            tls,
            server.http,
            &[("Cookie", &cookie), ("Origin", &origin)],
        )
        .await
        {
            Ok(ws) => open.push(ws),
            Err(_) => refused += 1,
        }
    }
    eprintln!(
        "200 idle websockets from one address: {} open, {refused} refused",
        open.len()
    );
    assert!(open.len() <= 32, "{} open", open.len());
    assert!(refused >= 168);
    let r = https_raw(server.http, "GET", "/login", &[], b"").await;
    assert_eq!(r.status, 200, "another address is served: {r:?}");
}

/// `rtcam passwd` beside the running service ends every login: the old
/// cookie is refused and an open signaling socket is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_ends_every_login() {
    let server = Server::start(&["--size", "640x360"]);
    let (cookie, mut ws) = logged_in_socket(&server).await;
    let dir = server.state_dir.display().to_string();
    let (ok, _, err) = rtcam_command(
        &["passwd", "--password-stdin", "--state-dir", &dir],
        "a brand new password\n",
    );
    assert!(ok, "{err}");
    let msg = next_json(&mut ws).await;
    assert!(
        msg["message"]
            .as_str()
            .unwrap_or("")
            .contains("log in again"),
        "{msg}"
    );
    let r = https_raw(
        server.http,
        "GET",
        "/api/status",
        &[("Cookie", &cookie)],
        b"",
    )
    .await;
    assert_eq!(r.status, 401, "the old login is over");
    assert!(
        server.log_shows("the password changed: 1 login session(s) ended"),
        "{}",
        server.log()
    );
}
