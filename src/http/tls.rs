//! The HTTPS certificate: the owner's, or one generated on first start.
//!
//! A generated certificate is self-signed for every name the device answers
//! to (host name, `<host>.local`, localhost, each local IP), written once into
//! the state dir (key 0600, dir 0700) and reused, so a browser exception the
//! owner accepted keeps working across restarts.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

use crate::state_dir::{ensure_private_dir, write_private};

const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("{0} holds no PEM certificate")]
    NoCert(PathBuf),
    #[error("{0} holds no PEM private key")]
    NoKey(PathBuf),
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("certificate and key do not work together: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The process-wide crypto provider: aws-lc-rs, the one str0m uses too.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Loads the owner's certificate, or the generated one (making it first).
pub fn server_config(
    owner: Option<(&Path, &Path)>,
    state_dir: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert_path, key_path) = match owner {
        Some((c, k)) => (c.to_path_buf(), k.to_path_buf()),
        None => ensure_generated(state_dir)?,
    };
    let certs = load_certs(&cert_path)?;
    let key = load_key(&key_path)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = fs::read(path).map_err(|e| TlsError::Read(path.into(), e))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCert(path.into()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = fs::read(path).map_err(|e| TlsError::Read(path.into(), e))?;
    rustls_pemfile::private_key(&mut &pem[..])
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::NoKey(path.into()))
}

/// The generated pair's paths, generating it when it is not there yet.
fn ensure_generated(state_dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert = state_dir.join(CERT_FILE);
    let key = state_dir.join(KEY_FILE);
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    ensure_private_dir(state_dir).map_err(|e| TlsError::Write(state_dir.into(), e))?;
    let names = subject_names();
    let mut params = rcgen::CertificateParams::new(names.dns.clone())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("rtcam {}", names.host));
    params
        .subject_alt_names
        .extend(names.ips.iter().map(|ip| rcgen::SanType::IpAddress(*ip)));
    let key_pair = rcgen::KeyPair::generate()?;
    let generated = params.self_signed(&key_pair)?;
    write_private(&key, key_pair.serialize_pem().as_bytes())
        .map_err(|e| TlsError::Write(key.clone(), e))?;
    write_private(&cert, generated.pem().as_bytes())
        .map_err(|e| TlsError::Write(cert.clone(), e))?;
    tracing::info!(
        "generated a self-signed certificate for {} and {} address(es) in {}",
        names.dns.join(", "),
        names.ips.len(),
        state_dir.display()
    );
    Ok((cert, key))
}

struct Names {
    host: String,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
}

fn subject_names() -> Names {
    use crate::net::host::{hostname, local_ips};
    let host = hostname().unwrap_or_else(|| "rtcam".into());
    let mut dns = vec![host.clone()];
    if !host.ends_with(".local") && !host.contains('.') {
        dns.push(format!("{host}.local"));
    }
    if host != "localhost" {
        dns.push("localhost".into());
    }
    let mut ips = local_ips();
    for lo in ["127.0.0.1", "::1"] {
        let ip: IpAddr = lo.parse().expect("valid literal");
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    Names { host, dns, ips }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rtcam-tls-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn generates_once_with_private_key_and_reuses_it() {
        let dir = temp_dir("gen");
        server_config(None, &dir).expect("first start generates");
        let key = dir.join(KEY_FILE);
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(dmode, 0o700);
        let before = fs::read(dir.join(CERT_FILE)).unwrap();
        server_config(None, &dir).expect("second start reuses");
        assert_eq!(before, fs::read(dir.join(CERT_FILE)).unwrap());
        fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn the_generated_certificate_names_the_host_on_the_lan() {
        let dir = temp_dir("names");
        server_config(None, &dir).expect("generates");
        let pem = fs::read_to_string(dir.join(CERT_FILE)).unwrap();
        let der = rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .expect("a certificate")
            .unwrap();
        // A SAN dNSName is its ASCII text in the DER, as is.
        let has = |name: &str| der.windows(name.len()).any(|w| w == name.as_bytes());
        let host = crate::net::host::hostname().unwrap();
        assert!(has(&format!("{host}.local")), "{host}.local in the SANs");
        assert!(has(&host) && has("localhost"));
        fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn owner_files_that_are_not_pem_are_named_in_the_error() {
        let dir = temp_dir("bad");
        fs::create_dir_all(&dir).unwrap();
        let c = dir.join("c.pem");
        let k = dir.join("k.pem");
        fs::write(&c, "not a cert").unwrap();
        fs::write(&k, "not a key").unwrap();
        let err = server_config(Some((&c, &k)), &dir).unwrap_err().to_string();
        assert!(err.contains("c.pem"), "{err}");
        fs::remove_dir_all(dir).ok();
    }
}
