//! Settings that would expose the control plane are refused before anything is served.

use kasmina_server::{ReadToken, ServerConfig, ServerError, TlsSettings};

use crate::harness::{TOKEN, fixture, pem, private_key};

fn off_loopback() -> std::net::SocketAddr {
    "0.0.0.0:50051".parse().unwrap()
}

#[test]
fn loopback_defaults_are_accepted() {
    ServerConfig::default().check("127.0.0.1:0".parse().unwrap()).unwrap();
    ServerConfig::default().check("[::1]:0".parse().unwrap()).unwrap();
}

#[test]
fn off_loopback_needs_read_authorisation_and_tls() {
    let err = ServerConfig::default().check(off_loopback()).unwrap_err();
    assert!(matches!(err, ServerError::ReadsUnprotected(_)), "{err}");

    let token_only = ServerConfig { read_token: Some(ReadToken::new(TOKEN).unwrap()), ..ServerConfig::default() };
    let err = token_only.check(off_loopback()).unwrap_err();
    assert!(matches!(err, ServerError::PlaintextOffLoopback(_)), "{err}");
    assert!(err.to_string().contains("TLS"), "{err}");

    let behind_proxy = ServerConfig { allow_plaintext: true, ..token_only.clone() };
    behind_proxy.check(off_loopback()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let tls = TlsSettings::from_pem_files(&fixture("server.pem"), &private_key(dir.path(), "server.key")).unwrap();
    let with_tls = ServerConfig { tls: Some(tls.clone()), ..token_only };
    with_tls.check(off_loopback()).unwrap();
    // Client certificates alone authorise reads.
    let mtls = ServerConfig { tls: Some(tls.client_ca_pem(pem("ca.pem"))), ..ServerConfig::default() };
    mtls.check(off_loopback()).unwrap();
}

#[test]
fn weak_tokens_world_readable_keys_and_missing_files_are_typed_errors() {
    let err = ReadToken::new("short").unwrap_err();
    assert!(matches!(err, ServerError::WeakReadToken { len: 5, min: 16 }), "{err}");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let key = private_key(dir.path(), "server.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = TlsSettings::from_pem_files(&fixture("server.pem"), &key).unwrap_err();
        assert!(matches!(err, ServerError::KeyFilePermissions { mode: 0o644, .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
    let err = TlsSettings::from_pem_files(&fixture("server.pem"), &fixture("no-such.key")).unwrap_err();
    assert!(matches!(err, ServerError::TlsFile { .. }), "{err}");
    assert!(err.to_string().contains("no-such.key"), "{err}");
}

#[test]
fn requiring_client_certificates_without_a_ca_is_refused() {
    let tls = TlsSettings::from_pem(pem("server.pem"), pem("server.key")).require_client_cert(true);
    let config = ServerConfig { tls: Some(tls), ..ServerConfig::default() };
    let err = config.check("127.0.0.1:0".parse().unwrap()).unwrap_err();
    assert!(matches!(err, ServerError::ClientCertWithoutCa), "{err}");
}

#[tokio::test]
async fn a_garbage_certificate_is_a_typed_error_at_serve() {
    let tls = TlsSettings::from_pem(b"not a certificate".to_vec(), b"not a key".to_vec());
    let plane = kasmina_server::ControlPlane::new(
        crate::harness::kasmina(),
        ServerConfig { tls: Some(tls), ..ServerConfig::default() },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = plane.serve(listener, std::future::pending()).await.unwrap_err();
    assert!(matches!(err, ServerError::Tls(_)), "{err}");
}
