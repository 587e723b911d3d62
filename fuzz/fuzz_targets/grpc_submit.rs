//! The gRPC `SubmitCommand` handler (`kasmina_server::ControlService` behind tonic's generated
//! `KasminaControlServer`) on arbitrary request bodies, driven in process: an `http::Request`
//! whose body is one gRPC frame (uncompressed, 4-byte big-endian length) around the input,
//! answered on a current-thread tokio runtime (no HTTP/2, no socket).
//!
//! Checks, for every input:
//! - the call never panics, and its response body and trailers are well formed;
//! - the grpc-status is `OK` exactly when the input decodes as a `SignedCommand`, and
//!   `INVALID_ARGUMENT` exactly when it does not (never `INTERNAL`, `UNKNOWN` or anything else);
//! - an `OK` response carries one `CommandReceipt`, refused (`accepted = false`, status
//!   `REFUSED`): no input is signed with the server's secret, so none may be accepted; its
//!   reason is the verifier's own for that envelope, and its transport is gRPC.
//!
//! One `Kasmina` serves every input (built once, lazily), as one server serves every caller.
//!
//! Run: `cargo xtask fuzz --target grpc_submit`.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full};
use kasmina_runtime::Kasmina;
use kasmina_security::{CommandVerifier, KeyRing};
use kasmina_server::{ControlService, ServerConfig};
use leyline::kasmina_control_server::KasminaControlServer;
use leyline::{CommandReceipt, CommandTransport, Message, ReceiptStatus, SignedCommand};
use libfuzzer_sys::fuzz_target;
use tonic::Code;
use tonic::codegen::Service;

const SECRET: &str = "kasmina-fuzz-secret";
const PATH: &str = "/esper.leyline.v1.KasminaControl/SubmitCommand";

struct Harness {
    runtime: tokio::runtime::Runtime,
    server: KasminaControlServer<ControlService>,
    /// A verifier with the server's keys: the reason each envelope must be refused for.
    verifier: CommandVerifier,
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let keys = KeyRing::with_key("default", SECRET).expect("valid key");
    let kasmina = Kasmina::builder().signing_keys(keys.clone()).build().expect("runtime builds");
    let config = ServerConfig { receipt_wait: Duration::ZERO, ..Default::default() };
    let server = ControlService::new(kasmina, &config).into_server(config.max_request_bytes);
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("tokio runtime");
    Harness { runtime, server, verifier: CommandVerifier::new(keys) }
});

fuzz_target!(|data: &[u8]| {
    let harness = &*HARNESS;
    let (code, body) = harness.runtime.block_on(call(harness.server.clone(), data));
    match SignedCommand::decode(data) {
        Ok(signed) => {
            assert_eq!(code, Code::Ok, "a decodable SignedCommand must be answered OK");
            let receipt = single_message(body);
            assert!(!receipt.accepted, "unsigned input accepted: {receipt:?}");
            assert_eq!(receipt.status(), ReceiptStatus::Refused, "{receipt:?}");
            let rejection = harness.verifier.verify_signed(&signed).expect_err("the verifier refuses it too");
            assert_eq!(receipt.reason, rejection.reason(), "{receipt:?}");
            let transport = receipt.provenance.as_ref().map(|p| p.transport());
            assert_eq!(transport, Some(CommandTransport::Grpc), "{receipt:?}");
        }
        Err(_) => {
            assert_eq!(code, Code::InvalidArgument, "an undecodable body must be INVALID_ARGUMENT");
            assert!(body.is_empty(), "an error carries no message");
        }
    }
});

/// One unary call: the grpc-status (from the trailers, or the headers of a trailers-only
/// response) and the response body.
async fn call(mut server: KasminaControlServer<ControlService>, message: &[u8]) -> (Code, Bytes) {
    let len = u32::try_from(message.len()).expect("fuzz inputs are small");
    let frame = [&[0u8][..], &len.to_be_bytes(), message].concat();
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(PATH)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(frame)))
        .expect("valid request");
    let response = server.call(request).await.expect("the service is infallible");
    let (parts, body) = response.into_parts();
    assert_eq!(parts.status, http::StatusCode::OK, "gRPC answers HTTP 200 whatever the outcome");
    let collected = body.collect().await.expect("the response body is well formed");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let status = trailers.get("grpc-status").or_else(|| parts.headers.get("grpc-status"));
    let status = status.expect("a grpc-status").to_str().expect("ASCII grpc-status");
    let code = Code::from_i32(status.parse().unwrap_or_else(|_| panic!("numeric grpc-status `{status}`")));
    (code, collected.to_bytes())
}

/// The one gRPC frame of a unary response, decoded.
fn single_message(mut body: Bytes) -> CommandReceipt {
    assert!(body.len() >= 5, "a unary OK response carries one frame");
    assert_eq!(body.get_u8(), 0, "uncompressed");
    let len = body.get_u32() as usize;
    assert_eq!(len, body.len(), "exactly one frame");
    CommandReceipt::decode(body).expect("the receipt decodes")
}
