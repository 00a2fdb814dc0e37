//! The WHIP client's HTTP: one request per connection (WHIP sends a
//! handful per session), HTTP/1.1 over TCP or TLS (the system's CA
//! certificates), a time limit on the whole exchange and a bounded body.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, ETAG, HOST, LOCATION};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::client::{Request, Response, Transport};
use super::url::Scheme;

/// The largest answer read: an SDP answer is a few KB.
const MAX_BODY: usize = 256 * 1024;

pub struct HttpClient {
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

impl HttpClient {
    /// A client trusting the system's CA certificates (none found: HTTPS
    /// endpoints fail with a TLS error that says so).
    pub fn new(timeout: Duration) -> HttpClient {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!(
                "no CA certificates found (install ca-certificates): https:// WHIP endpoints will fail"
            );
        }
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        HttpClient {
            tls: Arc::new(tls),
            timeout,
        }
    }

    pub async fn send(&self, req: &Request) -> Result<Response, Transport> {
        match tokio::time::timeout(self.timeout, self.exchange(req)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Transport::Timeout),
        }
    }

    async fn exchange(&self, req: &Request) -> Result<Response, Transport> {
        let (host, port) = req
            .url
            .host_port()
            .map_err(|e| Transport::Resolve(e.to_string()))?;
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(connect_error)?;
        let _ = tcp.set_nodelay(true);
        match req.url.scheme {
            Scheme::Http => over(tcp, req).await,
            Scheme::Https => {
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| Transport::Tls(e.to_string()))?;
                let stream = tokio_rustls::TlsConnector::from(self.tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| Transport::Tls(e.to_string()))?;
                over(stream, req).await
            }
        }
    }
}

async fn over<S>(stream: S, req: &Request) -> Result<Response, Transport>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(io_error)?;
    let conn = tokio::spawn(conn);
    let mut builder = hyper::Request::builder()
        .method(req.method.as_str())
        .uri(req.url.path.as_str())
        .header(HOST, req.url.authority.as_str());
    for (name, value) in &req.headers {
        builder = builder.header(*name, value.as_str());
    }
    let body = Full::new(Bytes::from(req.body.clone().unwrap_or_default()));
    let request = builder
        .body(body)
        .map_err(|e| Transport::Io(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(io_error)?;
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let (status, location, etag, content_type) = (
        response.status().as_u16(),
        header(LOCATION),
        header(ETAG),
        header(CONTENT_TYPE),
    );
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| Transport::Io(format!("reading the answer: {e}")))?
        .to_bytes();
    conn.abort();
    Ok(Response {
        status,
        location,
        etag,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn connect_error(e: std::io::Error) -> Transport {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => Transport::Refused,
        _ if e.to_string().contains("lookup") || e.to_string().contains("resolve") => {
            Transport::Resolve(e.to_string())
        }
        _ => Transport::Io(e.to_string()),
    }
}

fn io_error(e: hyper::Error) -> Transport {
    Transport::Io(e.to_string())
}
