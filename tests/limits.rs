//! Each limit answers with its status and a log line, and none of them
//! stops the server serving others.

use crate::common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_413_and_slow_body_is_408() {
    let server = Server::start(&["--size", "640x360"]);
    let big = vec![b'v'; 200 * 1024];
    let r = server
        .https("POST", "/whep", Some("application/sdp"), &big)
        .await;
    assert_eq!(r.status, 413);
    assert!(server.log_shows("limit: answered 413"), "{}", server.log());

    // Promise a body and never send it.
    let mut s = tls_connect(server.http).await;
    let auth = format!("Bearer {}", server.token);
    let head = format!(
        "POST /whep HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\nContent-Type: application/sdp\r\nContent-Length: 1000\r\n\r\nv=0\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw)).await;
    assert!(read.is_ok(), "the server gives up on a slow client");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(server.log_shows("limit: answered 408"));
    assert_eq!(server.status().await["viewers"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_per_address_are_limited_with_429() {
    let server = Server::start(&["--size", "640x360", "--max-viewers-per-address", "1"]);
    let mut a = Client::new();
    whep_connect(&server, &mut a).await;
    let b = Client::new();
    let r = server
        .https("POST", "/whep", Some("application/sdp"), b.offer.as_bytes())
        .await;
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.body.contains("maximum of 1"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signaling_flood_is_cut_off() {
    let server = Server::start(&["--size", "640x360"]);
    let mut ws = server.ws().await;
    for _ in 0..200 {
        if ws
            .send(Message::Text(r#"{"type":"hangup"}"#.into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let mut saw_limit = false;
    let mut closed = false;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        match msg {
            Ok(Message::Text(t)) if t.contains("too many messages") => saw_limit = true,
            Ok(Message::Close(_)) | Err(_) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(saw_limit && closed, "limit {saw_limit} closed {closed}");
    assert!(server.log_shows("signaling flood"));
    // Others are unaffected.
    let mut c = Client::new();
    whep_connect(&server, &mut c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_the_https_port_is_told_so() {
    let server = Server::start(&["--size", "640x360"]);
    let mut tcp = tokio::net::TcpStream::connect(server.http).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut raw))
        .await
        .expect("an answer, not a hang")
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.1 400") && text.contains("https://"),
        "{text}"
    );
}

/// A TCP connection from `from` that sends nothing.
async fn silent(server: &Server, from: std::net::IpAddr) -> tokio::net::TcpStream {
    tcp_from(server.http, from).await.unwrap()
}

/// A thousand connections that send nothing, from ten addresses, cannot keep
/// a newcomer out: each address holds at most its share, and a newcomer
/// takes the slot of the idlest (before: 129 of them locked everyone out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_cannot_keep_a_newcomer_out() {
    let server = Server::start(&["--size", "640x360"]);
    let mut held = Vec::new();
    for i in 0..1000u32 {
        let from = std::net::IpAddr::from([127, 0, 1, 10 + (i % 10) as u8]);
        held.push(silent(&server, from).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = std::time::Instant::now();
    let r = https_raw(server.http, "GET", "/login", &[], b"").await;
    let took = t.elapsed();
    eprintln!(
        "a newcomer after 1,000 silent connections: {} in {took:?}",
        r.status
    );
    assert_eq!(r.status, 200, "{r:?}");
    // An emulated CPU (qemu-user) needs longer for the TLS handshake alone.
    let bound = Duration::from_secs(if emulated() { 5 } else { 1 });
    assert!(took < bound, "served in {took:?}");
    drop(held);
}

/// 128 requests whose bodies never come (32 addresses, 4 each) cannot keep
/// a newcomer out: it takes the slot of the body arriving longest, and the
/// held requests are answered 408 (before: every newcomer got 503 until the
/// 10 s request timeout recycled them, and then again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_whose_bodies_never_come_cannot_keep_a_newcomer_out() {
    let server = Server::start(&["--size", "640x360"]);
    let mut held = Vec::new();
    for i in 0..128u32 {
        let from = std::net::IpAddr::from([127, 0, 2, 10 + (i % 32) as u8]);
        let mut tls = tls_connect_from(server.http, Some(from)).await;
        let head = "POST /login HTTP/1.1\r\nHost: localhost\r\n\
                    Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n";
        tokio::io::AsyncWriteExt::write_all(&mut tls, head.as_bytes())
            .await
            .unwrap();
        held.push(tls);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = https_raw(server.http, "GET", "/login", &[], b"").await;
    assert_eq!(r.status, 200, "{r:?}");
    let mut answer = Vec::new();
    let last = held.last_mut().unwrap();
    let read = tokio::time::timeout(Duration::from_secs(10), last.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        read.is_ok(),
        "a held request is answered or closed, not kept"
    );
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    drop(held);
}
