//! TLS and client certificates: who may connect, who may read.

use kasmina_server::{ReadToken, ServerConfig, TlsSettings};
use leyline::{HealthRequest, SystemStateRequest};
use tonic::Code;

use crate::harness::{Served, TOKEN, fixture, private_key, signed, with_token};

fn tls(dir: &std::path::Path) -> TlsSettings {
    TlsSettings::from_pem_files(&fixture("server.pem"), &private_key(dir, "server.key")).unwrap()
}

#[tokio::test]
async fn tls_serves_commands_and_reads_and_plaintext_clients_cannot_connect() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(ServerConfig { tls: Some(tls(dir.path())), ..ServerConfig::default() }).await;
    let mut client = served.tls(None).await.unwrap();
    client.health(HealthRequest {}).await.unwrap();
    let receipt = client.submit_command(signed("over-tls")).await.unwrap().into_inner();
    assert_eq!(receipt.command_id, "over-tls");
    // A plaintext HTTP/2 client on the TLS port gets no service.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", served.addr))
        .unwrap()
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(3));
    let answered = match plain.connect().await {
        Err(_) => false,
        Ok(channel) => {
            leyline::kasmina_control_client::KasminaControlClient::new(channel).health(HealthRequest {}).await.is_ok()
        }
    };
    assert!(!answered, "plaintext on a TLS port must not be served");
    served.stop().await;
}

#[tokio::test]
async fn a_verified_client_certificate_authorises_reads_and_the_token_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let settings = tls(dir.path()).client_ca_pem(crate::harness::pem("ca.pem"));
    let config = ServerConfig {
        tls: Some(settings),
        read_token: Some(ReadToken::new(TOKEN).unwrap()),
        ..ServerConfig::default()
    };
    let served = Served::start(config).await;
    let mut with_cert = served.tls(Some("client")).await.unwrap();
    with_cert.get_system_state(SystemStateRequest {}).await.unwrap();
    with_cert.health(HealthRequest {}).await.unwrap();

    let mut anonymous = served.tls(None).await.unwrap();
    assert_eq!(anonymous.health(HealthRequest {}).await.unwrap_err().code(), Code::Unauthenticated);
    anonymous.health(with_token(HealthRequest {})).await.unwrap();
    // Commands need no certificate: their HMAC authenticates them.
    assert_eq!(anonymous.submit_command(signed("anon-cmd")).await.unwrap().into_inner().command_id, "anon-cmd");

    // A certificate from another CA fails the handshake.
    let rogue = match served.tls(Some("rogue-client")).await {
        Err(_) => None,
        Ok(mut c) => Some(c.health(HealthRequest {}).await.map(|_| ())),
    };
    assert!(!matches!(rogue, Some(Ok(()))), "a rogue client certificate must not be accepted: {rogue:?}");
    served.stop().await;
}

#[tokio::test]
async fn required_client_certificates_keep_anonymous_clients_out() {
    let dir = tempfile::tempdir().unwrap();
    let settings = tls(dir.path()).client_ca_pem(crate::harness::pem("ca.pem")).require_client_cert(true);
    let served = Served::start(ServerConfig { tls: Some(settings), ..ServerConfig::default() }).await;
    let mut with_cert = served.tls(Some("client")).await.unwrap();
    with_cert.health(HealthRequest {}).await.unwrap();
    assert_eq!(with_cert.submit_command(signed("mtls-cmd")).await.unwrap().into_inner().command_id, "mtls-cmd");
    let anonymous = match served.tls(None).await {
        Err(_) => None,
        Ok(mut c) => Some(c.submit_command(signed("anon")).await.map(|_| ())),
    };
    assert!(!matches!(anonymous, Some(Ok(()))), "no certificate, no service: {anonymous:?}");
    served.stop().await;
}
