//! HTTPS with rustls: the service serves TLS with a generated certificate,
//! a client that trusts it gets answers, plain HTTP on the same port gets
//! none, and bad certificate files are clear errors.

use std::sync::Arc;

use fleet_api::http::{serve, AppState};
use fleet_api::tls::server_config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::{self, pki_types::ServerName, RootCertStore};

mod common;

/// A self-signed certificate for `localhost`: (cert PEM, key PEM, cert DER).
fn certificate() -> (String, String, rustls::pki_types::CertificateDer<'static>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().clone())
}

async fn get_over_tls(
    port: u16,
    trusted: rustls::pki_types::CertificateDer<'static>,
    path: &str,
) -> std::io::Result<String> {
    let mut roots = RootCertStore::empty();
    roots.add(trusted).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await?;
    Ok(answer)
}

#[tokio::test]
async fn serves_https_with_the_configured_certificate_and_nothing_in_plain_text() {
    let dir = std::env::temp_dir().join(format!("fleet-tls-{}", fleet_api::store::new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_pem, key_pem, cert_der) = certificate();
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert_pem).unwrap();
    std::fs::write(&key_file, key_pem).unwrap();
    let config = server_config(&cert_file, &key_file).unwrap();

    let store = common::stores().await.remove(0);
    common::install_admin_key(&store).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(serve(
        listener,
        AppState::new(store, 1),
        Some(config),
        std::future::pending(),
    ));

    let health = get_over_tls(port, cert_der.clone(), "/health")
        .await
        .unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // Access control applies over TLS as well.
    let runs = get_over_tls(port, cert_der, "/api/v1/fleet-optimization/runs")
        .await
        .unwrap();
    assert!(runs.starts_with("HTTP/1.1 401"), "{runs}");

    // A client that does not trust the certificate refuses the connection.
    let (_, _, stranger) = certificate();
    assert!(get_over_tls(port, stranger, "/health").await.is_err());

    // Plain HTTP gets no HTTP answer (the handshake fails, the connection closes).
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");

    // Bad files are errors that name the setting.
    let missing = dir.join("missing.pem");
    let err = server_config(&missing, &key_file).unwrap_err();
    assert!(err.contains("TLS_CERT_FILE"), "{err}");
    let err = server_config(&cert_file, &cert_file).unwrap_err();
    assert!(err.contains("TLS_KEY_FILE"), "{err}");
    let (other_cert, _, _) = certificate();
    let other_file = dir.join("other.pem");
    std::fs::write(&other_file, other_cert).unwrap();
    let err = server_config(&other_file, &key_file).unwrap_err();
    assert!(err.contains("do not fit"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
