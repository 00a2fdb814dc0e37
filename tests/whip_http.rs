//! The real binary publishes by WHIP to a receiver on loopback: an HTTP
//! stand-in that answers with a str0m peer and decodes what arrives. What
//! goes over the wire is checked byte for byte (exact `Content-Type`, the
//! bearer token, CRLF SDP with candidates), a 503 is retried, a relative
//! `Location` is used for the DELETE that SIGTERM sends, and `/api/status`
//! follows it all. Real sockets, no SFU: `tests/browser/test_whip_janus.py`
//! does the same through Janus.

use crate::common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Client, Report, Server};

/// One request as the stand-in read it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        path,
        headers,
        body: String::from_utf8(body).ok()?,
    })
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, &str)], body: &str) {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    out.push_str(body);
    let _ = stream.write_all(out.as_bytes());
}

/// The stand-in: the first POST gets 503, the next is answered by a str0m
/// receiver that then watches for `frames` stamped frames.
fn stand_in(
    listener: TcpListener,
    frames: usize,
) -> (mpsc::Receiver<Seen>, mpsc::Receiver<Report>) {
    let (seen_tx, seen) = mpsc::channel();
    let (report_tx, reports) = mpsc::channel();
    std::thread::spawn(move || {
        let mut posts = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some(req) = read_request(&mut stream) else {
                continue;
            };
            let _ = seen_tx.send(req.clone());
            match req.method.as_str() {
                "POST" if posts == 0 => {
                    posts += 1;
                    respond(&mut stream, "503 Service Unavailable", &[], "busy");
                }
                "POST" => {
                    posts += 1;
                    let (client, answer) = Client::answering(&req.body);
                    let headers = [
                        ("Content-Type", "application/sdp"),
                        ("Location", "../resource/7"),
                        ("ETag", "\"e7\""),
                    ];
                    respond(&mut stream, "201 Created", &headers, &answer);
                    let report_tx = report_tx.clone();
                    std::thread::spawn(move || {
                        let _ = report_tx.send(client.run(frames, Duration::from_secs(20), false));
                    });
                }
                _ => respond(&mut stream, "200 OK", &[], ""),
            }
        }
    });
    (seen, reports)
}

async fn whip_state(server: &Server) -> serde_json::Value {
    server.status().await["whip"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_to_a_whip_receiver_retries_a_503_and_deletes_on_sigterm() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (seen, reports) = stand_in(listener, 30);
    let dir = std::env::temp_dir().join(format!("rtcam-whip-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "sfu-token-1\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let url = format!("http://127.0.0.1:{port}/whip/endpoint/cam");
    let mut server = Server::start(&[
        "--size",
        "640x360",
        "--whip",
        &url,
        "--whip-token-file",
        token_file.to_str().unwrap(),
    ]);

    // The first offer, as receivers require it.
    let first = seen.recv_timeout(Duration::from_secs(10)).expect("a POST");
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("POST", "/whip/endpoint/cam")
    );
    assert_eq!(first.headers["content-type"], "application/sdp", "exactly");
    assert_eq!(first.headers["authorization"], "Bearer sfu-token-1");
    assert_eq!(first.headers["host"], format!("127.0.0.1:{port}"));
    assert!(first.body.starts_with("v=0\r\n") && first.body.ends_with("\r\n"));
    assert!(
        !first.body.replace("\r\n", "").contains('\n'),
        "CRLF line ends only"
    );
    assert!(
        first.body.contains("a=candidate:"),
        "candidates in the offer"
    );
    assert!(first.body.contains("a=sendonly") && first.body.contains("H264/90000"));
    assert!(!first.body.contains("VP8"), "one codec: H.264 by default");

    // The 503 shows, and is retried after a second.
    let mut shown = false;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until && !shown {
        let w = whip_state(&server).await;
        shown = w["last_error"].as_str().is_some_and(|e| e.contains("503"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = seen
        .recv_timeout(Duration::from_secs(5))
        .expect("a second POST");
    assert_eq!(second.method, "POST");
    assert!(shown || server.log().contains("503"), "{}", server.log());

    // Media flows to the receiver (rtcam controlling ICE, DTLS, H.264).
    let report = tokio::task::spawn_blocking(move || reports.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the receiver's report");
    assert!(report.connected, "ICE and DTLS up: {report:?}");
    assert!(report.stamped >= 30, "stamped frames arrived: {report:?}");
    // Link stats come once a second.
    let mut w = whip_state(&server).await;
    for _ in 0..30 {
        if w["bytes_sent"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        w = whip_state(&server).await;
    }
    assert_eq!(w["codec"], "H.264");
    assert_eq!(w["state"], "live", "{w}");
    assert!(w["bytes_sent"].as_u64().unwrap_or(0) > 10_000, "{w}");
    assert!(
        w["since_ms"].as_u64().unwrap_or(0) > 1_700_000_000_000,
        "{w}"
    );
    eprintln!(
        "WHIP to a loopback receiver: {} stamped frames, first after {:?}, latency p50 {:?} ms",
        report.stamped,
        report.first_frame_after,
        report.latency_p50()
    );

    // SIGTERM: the DELETE goes to the resource (relative Location resolved).
    let (status, took) = server.terminate();
    assert!(status.success(), "{status:?}");
    let delete = std::iter::from_fn(|| seen.recv_timeout(Duration::from_secs(1)).ok())
        .find(|r| r.method == "DELETE")
        .unwrap_or_else(|| panic!("no DELETE:\n{}", server.log()));
    assert_eq!(delete.path, "/whip/resource/7");
    assert_eq!(delete.headers["authorization"], "Bearer sfu-token-1");
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    let _ = std::fs::remove_dir_all(dir);
}
