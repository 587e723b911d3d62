//! The plaintext control plane on loopback: the handshake gate, the codec, read authorisation.

use std::time::Duration;

use bytes_codec::RawCodec;
use kasmina_server::{ReadToken, ServerConfig};
use leyline::{HealthRequest, ReceiptRequest, SystemStateRequest, TelemetryRequest};
use tokio::io::AsyncReadExt as _;
use tonic::Code;

use crate::harness::{Served, TOKEN, signed, with_token};

#[tokio::test]
async fn a_connection_that_never_speaks_is_closed_and_the_server_keeps_serving() {
    let config = ServerConfig { handshake_timeout: Duration::from_millis(300), ..ServerConfig::default() };
    let served = Served::start(config).await;
    let mut silent: Vec<_> = Vec::new();
    for _ in 0..8 {
        silent.push(tokio::net::TcpStream::connect(served.addr).await.unwrap());
    }
    for socket in &mut silent {
        let mut byte = [0_u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "a silent socket is closed by the server: {read:?}");
    }
    let mut client = served.plain().await;
    let health = client.health(HealthRequest {}).await.unwrap().into_inner();
    assert!(!health.summary.is_empty() || health.status != 0, "{health:?}");
    served.stop().await;
}

#[tokio::test]
async fn an_undecodable_request_body_is_invalid_argument() {
    let served = Served::start(ServerConfig::default()).await;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", served.addr)).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/esper.leyline.v1.KasminaControl/SubmitCommand");
    // Field 1 (length-delimited) claiming 127 bytes, with 2 present: truncated.
    let garbage = vec![0x0a, 0x7f, 0x01, 0x02];
    let status = grpc.unary(tonic::Request::new(garbage), path, RawCodec).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("esper.leyline.v1.SignedCommand"), "{status:?}");
    // The command path still works afterwards.
    let receipt = served.plain().await.submit_command(signed("after-garbage")).await.unwrap().into_inner();
    assert_eq!(receipt.command_id, "after-garbage");
    served.stop().await;
}

#[tokio::test]
async fn with_a_read_token_every_read_needs_it_and_commands_do_not() {
    let config = ServerConfig { read_token: Some(ReadToken::new(TOKEN).unwrap()), ..ServerConfig::default() };
    let served = Served::start(config).await;
    let mut client = served.plain().await;
    let denied = [
        client.health(HealthRequest {}).await.map(|_| ()).unwrap_err().code(),
        client.get_system_state(SystemStateRequest {}).await.map(|_| ()).unwrap_err().code(),
        client.stream_telemetry(TelemetryRequest::default()).await.map(|_| ()).unwrap_err().code(),
        client.get_receipt(ReceiptRequest { command_id: "x".into() }).await.map(|_| ()).unwrap_err().code(),
    ];
    assert_eq!(denied, [Code::Unauthenticated; 4]);
    let mut wrong = tonic::Request::new(HealthRequest {});
    wrong.metadata_mut().insert("authorization", "Bearer read-token-0123456788".parse().unwrap());
    assert_eq!(client.health(wrong).await.unwrap_err().code(), Code::Unauthenticated);

    client.health(with_token(HealthRequest {})).await.unwrap();
    client.get_system_state(with_token(SystemStateRequest {})).await.unwrap();
    client.stream_telemetry(with_token(TelemetryRequest::default())).await.unwrap();
    // Commands are authenticated by their HMAC, not by the read token.
    let receipt = client.submit_command(signed("cmd-no-token")).await.unwrap().into_inner();
    assert_eq!(receipt.command_id, "cmd-no-token");
    let found = client.get_receipt(with_token(ReceiptRequest { command_id: "cmd-no-token".into() })).await;
    assert_eq!(found.unwrap().into_inner().command_id, "cmd-no-token");
    served.stop().await;
}

/// A codec that sends and receives raw bytes: what a broken or hostile client puts on the wire.
mod bytes_codec {
    use bytes::{Buf as _, BufMut as _};
    use tonic::Status;
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    #[derive(Debug, Clone, Copy, Default)]
    pub struct RawCodec;

    #[derive(Debug, Clone, Copy, Default)]
    pub struct Raw;

    impl Codec for RawCodec {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = Raw;
        type Decoder = Raw;
        fn encoder(&mut self) -> Raw {
            Raw
        }
        fn decoder(&mut self) -> Raw {
            Raw
        }
    }

    impl Encoder for Raw {
        type Item = Vec<u8>;
        type Error = Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for Raw {
        type Item = Vec<u8>;
        type Error = Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
            let mut out = vec![0; src.remaining()];
            src.copy_to_slice(&mut out);
            Ok(Some(out))
        }
    }
}
