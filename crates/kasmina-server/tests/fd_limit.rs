//! With no file descriptor left, the accept loop backs off instead of spinning, and serves again
//! once descriptors are free. Runs itself again in a child process with `ulimit -n 64` (its own
//! test binary, so the low limit never touches other tests).
#![cfg(unix)]
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use kasmina_runtime::Kasmina;
use kasmina_runtime::reexports::security::KeyRing;
use kasmina_server::{ControlPlane, ServerConfig};

const CHILD: &str = "KASMINA_FD_LIMIT_CHILD";
const TEST: &str = "with_no_file_descriptor_left_the_accept_loop_backs_off_and_recovers";

#[test]
fn with_no_file_descriptor_left_the_accept_loop_backs_off_and_recovers() {
    if std::env::var_os(CHILD).is_none() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n 64 && exec \"$0\" --exact {TEST} --nocapture --test-threads 1"))
            .arg(exe)
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "child failed:\n{text}");
        assert!(text.contains("1 passed"), "the child ran the test:\n{text}");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(exhaust_and_recover());
}

async fn exhaust_and_recover() {
    let kasmina = Kasmina::builder()
        .signing_keys(KeyRing::with_key("default", "fd-limit-test-secret-0123").unwrap())
        .build()
        .unwrap();
    let config = ServerConfig {
        handshake_timeout: Duration::from_secs(60),
        max_pending_handshakes: 1_000,
        ..ServerConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let plane = ControlPlane::new(kasmina, config);
    let service = plane.service().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(plane.serve(listener, async {
        let _ = stop_rx.await;
    }));

    // Silent clients until the process has no descriptor left (each costs one here and one for
    // the server's accepted socket). One descriptor is held in reserve: when the client side runs
    // out first (its socket cannot be created, so no connection waits in the backlog and the
    // server never fails an accept), the reserve is released for one more client, whose
    // connection the server then cannot accept. Without it the test raced (seen once in CI).
    let reserve = std::fs::File::open("/dev/null").unwrap();
    let mut clients = Vec::new();
    while clients.len() < 200 {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(c) => clients.push(c),
            Err(_) => break,
        }
        if service.accept_failures() > 0 {
            break;
        }
    }
    drop(reserve);
    if service.accept_failures() == 0
        && let Ok(c) = tokio::net::TcpStream::connect(addr).await
    {
        clients.push(c);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while service.accept_failures() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = service.accept_failures();
    assert!(first > 0, "the descriptor limit was reached ({} clients)", clients.len());
    // Two seconds with the limit reached: a backing-off loop retries a handful of times (50 ms
    // doubling to 1 s); a spinning one retries thousands of times.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let retries = service.accept_failures() - first;
    assert!(retries <= 10, "{retries} failed accepts in 2 s: the accept loop spins");

    // Descriptors free again: the server accepts and answers.
    drop(clients);
    let answered = async {
        loop {
            if let Ok(channel) =
                tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await
            {
                let mut client = leyline::kasmina_control_client::KasminaControlClient::new(channel);
                if client.health(leyline::HealthRequest {}).await.is_ok() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), answered).await.expect("serves again once descriptors are free");
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}
