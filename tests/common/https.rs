//! HTTPS and WebSocket clients that trust rtcam's self-signed certificate,
//! from any loopback address (the rate limits are per address).

use super::*;

#[derive(Debug)]
struct AcceptAnyCert;

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

pub async fn tls_connect(addr: SocketAddr) -> TlsStream<TcpStream> {
    tls_connect_from(addr, None).await
}

/// A TLS connection from `from` (another loopback address, 127.0.0.N).
pub async fn tls_connect_from(addr: SocketAddr, from: Option<IpAddr>) -> TlsStream<TcpStream> {
    let tcp = match from {
        None => TcpStream::connect(addr).await.unwrap(),
        Some(ip) => tcp_from(addr, ip).await.unwrap(),
    };
    tls_over(tcp).await.unwrap()
}

/// A TCP connection to `addr` from `from` (another loopback address).
pub async fn tcp_from(addr: SocketAddr, from: IpAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(addr).await
}

/// The TLS handshake on a TCP connection already made (any certificate).
pub async fn tls_over(tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body as sent (a JPEG is not text).
    pub bytes: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request over TLS, `Connection: close`.
pub async fn https_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    https_raw_from(addr, None, method, path, headers, body).await
}

/// [`https_raw`] from another loopback address.
pub async fn https_raw_from(
    addr: SocketAddr,
    from: Option<IpAddr>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    https_over(
        tls_connect_from(addr, from).await,
        addr,
        method,
        path,
        headers,
        body,
    )
    .await
}

/// [`https_raw`] on a TLS connection already made (to time the request
/// alone, without the handshake).
pub async fn https_over(
    mut s: TlsStream<TcpStream>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
        addr.port(),
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    // A server may answer (413) before reading a large body.
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    let bytes = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or_else(Vec::new, |at| raw[at + 4..].to_vec());
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_string(),
        bytes,
    }
}

pub type Ws = tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>>;

/// A WebSocket to /ws with these extra headers; the HTTP status on refusal.
pub async fn ws_connect_with(addr: SocketAddr, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    ws_over(tls_connect(addr).await, addr, headers).await
}

/// The WebSocket handshake on a TLS connection already made; `Err(status)`
/// when refused (0 when the connection was closed instead).
pub async fn ws_over(
    tls: TlsStream<TcpStream>,
    addr: SocketAddr,
    headers: &[(&str, &str)],
) -> Result<Ws, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("wss://localhost:{}/ws", addr.port())
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match tokio_tungstenite::client_async(req, tls).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(tokio_tungstenite::tungstenite::Error::Io(_))
        | Err(tokio_tungstenite::tungstenite::Error::Protocol(_)) => Err(0),
        Err(e) => panic!("websocket: {e}"),
    }
}
