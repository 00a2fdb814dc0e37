//! A picture shared in the chat: a viewer takes a snapshot, sends it in
//! base64 chunks on its `rtcam` channel, and another viewer gets a chat line
//! with its URL and fetches the same bytes over HTTPS (with its own token).

use crate::common;

use std::time::Duration;

use base64::Engine;
use common::channels::ChannelViewer;
use common::{Server, https_raw};

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_shared_in_the_chat_reaches_another_viewer() {
    let server = Server::start(&["--size", "640x360"]);
    let other = server.token("tablet", false);
    let mut a = ChannelViewer::join(server.http, &server.token).await;
    let mut b = ChannelViewer::join(server.http, &other).await;
    for v in [&mut a, &mut b] {
        v.wait_type("controls", Duration::from_secs(10))
            .expect("the channel is open");
    }
    let snap = server.https("GET", "/api/snapshot.jpg", None, b"").await;
    assert_eq!(snap.status, 200);
    let jpeg = snap.bytes;
    a.send(&format!(
        r#"{{"type":"image","id":1,"name":"snapshot.jpg","size":{}}}"#,
        jpeg.len()
    ));
    for part in jpeg.chunks(8 * 1024) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(part);
        a.send(&format!(
            r#"{{"type":"image_chunk","id":1,"data":"{b64}"}}"#
        ));
    }
    let line = b
        .wait_for(Duration::from_secs(10), |m| {
            m["type"] == "chat" && m["image"].is_object()
        })
        .expect("the picture's chat line");
    assert_eq!(line["from"], "tests", "the sender's token name");
    assert_eq!(line["image"]["mime"], "image/jpeg");
    assert_eq!(line["image"]["size"], jpeg.len());
    let url = line["image"]["url"].as_str().unwrap();
    let auth = format!("Bearer {}", other.trim());
    let got = https_raw(server.http, "GET", url, &[("Authorization", &auth)], b"").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("image/jpeg"));
    assert_eq!(got.bytes, jpeg, "the same picture");
    let anon = https_raw(server.http, "GET", url, &[], b"").await;
    assert_eq!(anon.status, 401);
    let gone = server.https("GET", "/api/chat/images/999", None, b"").await;
    assert_eq!(gone.status, 404);
    let own = a.wait_for(Duration::from_secs(10), |m| {
        m["type"] == "chat" && m["image"].is_object()
    });
    assert!(own.is_some(), "the sender sees its picture too");
    assert!(
        a.seen.iter().all(|m| m["type"] != "error"),
        "no errors for the sender: {:?}",
        a.seen
    );
}
