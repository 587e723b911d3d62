//! `kasmina serve` end to end: a real server process driven by the Rust tonic client.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kasmina_runtime::reexports::security::{KeyRing, sign_command};
use leyline::adaptation_command::Payload;
use leyline::kasmina_control_client::KasminaControlClient;
use leyline::wkt::Timestamp;
use leyline::{
    AdaptationCommand, CommandSeedOperation, CommandType, HealthRequest, HealthStatus, SeedLifecycleStage,
    SeedOperation, SignedCommand, SystemStateRequest, TelemetryLevel, TelemetryPacket, TelemetryRequest,
};
use tonic::transport::Channel;

use crate::{SECRET, kasmina};

/// Bound on every wait for the server (start, a packet, shutdown).
const WAIT: Duration = Duration::from_secs(60);

/// A running `kasmina serve`, killed when dropped.
struct Server {
    child: Option<Child>,
    addr: String,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let mut server = Self::start_in(tmp.path(), extra);
        server._tmp = Some(tmp);
        server
    }

    /// A server working in `dir` (its telemetry, rollback file and stderr log there).
    fn start_in(dir: &Path, extra: &[&str]) -> Self {
        let dir = dir.to_owned();
        let mut child = kasmina()
            .args(["serve", "--listen", "127.0.0.1:0", "--embargo-secs", "1"])
            .args(if extra.contains(&"--steps-per-stage") { &[][..] } else { &["--steps-per-stage", "8"][..] })
            .arg("--telemetry")
            .arg(dir.join("telemetry.jsonl"))
            .args(extra)
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(dir.join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx.recv_timeout(WAIT);
        let mut server = Self { child: Some(child), addr: String::new(), dir, _tmp: None };
        match line {
            Ok(Some(Ok(line))) => {
                let addr = line.strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected line {line:?}"));
                server.addr = addr.to_owned();
            }
            other => panic!("no `listening on` line ({other:?}); stderr:\n{}", server.stderr()),
        }
        server
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    async fn client(&self) -> KasminaControlClient<Channel> {
        KasminaControlClient::connect(format!("http://{}", self.addr)).await.unwrap()
    }

    /// Sends SIGTERM and waits (bounded) for the exit; SIGKILL if it does not come.
    fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.as_ref().expect("the server runs").id();
        let signal = |sig: &str| std::process::Command::new("kill").args([sig, &pid.to_string()]).status();
        assert!(signal("-TERM").unwrap().success());
        let mut child = self.child.take().expect("the server runs");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(WAIT) {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let _ = signal("-KILL");
                panic!("the server did not stop within {WAIT:?} after SIGTERM; stderr:\n{}", self.stderr());
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn keys() -> KeyRing {
    KeyRing::with_key("default", SECRET).unwrap()
}

fn now() -> Timestamp {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

fn command(id: &str, kind: CommandType, seed_id: &str, payload: Option<Payload>) -> AdaptationCommand {
    let mut c = AdaptationCommand {
        version: 1,
        command_id: id.to_owned(),
        target_seed_id: seed_id.to_owned(),
        issued_at: Some(now()),
        issued_by: "kasmina-cli-it".to_owned(),
        payload,
        ..Default::default()
    };
    c.set_command_type(kind);
    c
}

fn germinate(id: &str, seed_id: &str, blueprint: &str) -> SignedCommand {
    let mut op = CommandSeedOperation { blueprint_id: blueprint.to_owned(), ..Default::default() };
    op.set_operation(SeedOperation::SeedOpGerminate);
    sign_command(&command(id, CommandType::CommandSeed, seed_id, Some(Payload::SeedOperation(op))), "default", &keys())
        .unwrap()
}

/// Reads the stream until a packet has an event named `name` whose attributes satisfy `pred`.
async fn wait_for_event(
    stream: &mut tonic::Streaming<TelemetryPacket>,
    name: &str,
    pred: impl Fn(&std::collections::BTreeMap<String, String>) -> bool,
) -> TelemetryPacket {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(packet) = stream.message().await.unwrap() {
            if packet.events.iter().any(|e| e.description == name && pred(&e.attributes)) {
                return Some(packet);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(p)) => p,
        Ok(None) => panic!("the stream ended before a `{name}` event"),
        Err(_) => panic!("no `{name}` event within {WAIT:?}"),
    }
}

async fn stream(client: &mut KasminaControlClient<Channel>, min: TelemetryLevel) -> tonic::Streaming<TelemetryPacket> {
    client.stream_telemetry(TelemetryRequest { min_level: min as i32 }).await.unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_every_rpc_and_shuts_down_cleanly() {
    let mut server = Server::start(&[]);
    let mut client = server.client().await;

    let health = client.health(HealthRequest {}).await.unwrap().into_inner();
    assert_eq!(health.status(), HealthStatus::Healthy, "{health:?}");

    // Subscribed before the command, so its events cannot be missed.
    let mut info = stream(&mut client, TelemetryLevel::Info).await;
    let signed = germinate("it-germinate-1", "it-seed-1", "BP001");
    let receipt = client.submit_command(signed.clone()).await.unwrap().into_inner();
    assert!(receipt.accepted, "{receipt:?}");
    assert_eq!(receipt.reason, "ok");
    assert_eq!(receipt.command_id, "it-germinate-1");
    assert_eq!(receipt.seed_id, "it-seed-1");

    let replay = client.submit_command(signed.clone()).await.unwrap().into_inner();
    assert!(!replay.accepted);
    assert_eq!(replay.reason, "nonce_replayed");
    assert_eq!(replay.command_id, "it-germinate-1");

    let mut forged = germinate("it-germinate-2", "it-seed-2", "BP001");
    forged.signature = signed.signature.clone();
    let rejected = client.submit_command(forged).await.unwrap().into_inner();
    assert!(!rejected.accepted);
    assert_eq!(rejected.reason, "invalid_signature");

    wait_for_event(&mut info, "command_accepted", |a| a.get("command_id").is_some_and(|c| c == "it-germinate-1")).await;
    drop(info);
    let state = client.get_system_state(SystemStateRequest {}).await.unwrap().into_inner();
    assert_eq!(state.seed_states.len(), 2, "two slots: {state:?}");
    let seed = state.seed_states.iter().find(|s| s.seed_id == "it-seed-1").expect("the germinated seed");
    // With 8-step windows the seed may already have moved on (or, if G1 refused it, onto the
    // failure path); it is known either way.
    assert_ne!(seed.stage(), SeedLifecycleStage::SeedStageUnknown);

    // An EMERGENCY command reaches a CRITICAL-only subscriber as `emergency_cleanup`.
    let mut critical = stream(&mut client, TelemetryLevel::Critical).await;
    let emergency =
        sign_command(&command("it-emergency-1", CommandType::CommandEmergency, "", None), "default", &keys()).unwrap();
    let receipt = client.submit_command(emergency).await.unwrap().into_inner();
    assert!(receipt.accepted, "{receipt:?}");
    let packet = wait_for_event(&mut critical, "emergency_cleanup", |_| true).await;
    assert_eq!(packet.level(), TelemetryLevel::Critical);

    // `kasmina send` talks to the same server; a replayed id exits non-zero.
    let send = |id: &str| {
        kasmina()
            .args(["send", "--server", &format!("http://{}", server.addr), "--type", "emergency", "--command-id", id])
            .output()
            .unwrap()
    };
    let first = send("it-send-1");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let json: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(json["accepted"], true);
    assert_eq!(json["commandId"], "it-send-1");
    let again = send("it-send-1");
    assert!(!again.status.success());
    let json: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(json["reason"], "nonce_replayed");

    // SIGTERM: the open stream ends cleanly, the process exits 0.
    let status = server.terminate();
    assert!(status.success(), "exit {status:?}; stderr:\n{}", server.stderr());
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match critical.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the stream ends");
    assert!(matches!(end, Ok(None)), "{end:?}");
    drop(client);
    // Telemetry was flushed as canonical JSON lines; the rollback payloads were written.
    let lines = std::fs::read_to_string(server.path("telemetry.jsonl")).unwrap();
    assert!(lines.lines().count() > 0);
    for line in lines.lines() {
        let _: TelemetryPacket = serde_json::from_str(line).unwrap();
    }
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(server.path("kasmina-rollback.json")).unwrap()).unwrap();
    assert!(doc["rollbacks"].is_array(), "{doc}");
}

/// Steps the server has trained, from its state packet.
async fn seed_stage(client: &mut KasminaControlClient<Channel>, seed_id: &str) -> Option<SeedLifecycleStage> {
    let state = client.get_system_state(SystemStateRequest {}).await.unwrap().into_inner();
    state.seed_states.iter().find(|s| s.seed_id == seed_id).map(|s| s.stage())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_resumes_its_seeds_refuses_replays_and_keeps_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("ckpt");
    let flags = ["--checkpoint-dir", ckpt.to_str().unwrap(), "--checkpoint-every", "20", "--resume"];
    let mut server = Server::start_in(tmp.path(), &[&flags[..], &["--steps-per-stage", "100000"]].concat());
    let mut client = server.client().await;
    let signed = germinate("it-restart-1", "it-seed-r", "BP001");
    let receipt = client.submit_command(signed.clone()).await.unwrap().into_inner();
    assert!(receipt.accepted, "{receipt:?}");
    let mut before = None;
    for _ in 0..600 {
        before = seed_stage(&mut client, "it-seed-r").await;
        if before == Some(SeedLifecycleStage::SeedStageTraining) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(before, Some(SeedLifecycleStage::SeedStageTraining));
    drop(client);
    assert!(server.terminate().success(), "{}", server.stderr());
    let lines_before = std::fs::read_to_string(tmp.path().join("telemetry.jsonl")).unwrap().lines().count();
    assert!(lines_before > 0);
    assert!(tmp.path().join("kasmina-rollback.json").exists());
    drop(server);

    let mut server = Server::start_in(tmp.path(), &[&flags[..], &["--steps-per-stage", "100000"]].concat());
    assert!(server.stderr().contains("resumed at step"), "{}", server.stderr());
    let mut client = server.client().await;
    // The seed is back where it was (its window is far from over) ...
    assert_eq!(seed_stage(&mut client, "it-seed-r").await, Some(SeedLifecycleStage::SeedStageTraining));
    // ... and the command accepted before the restart is a replay after it.
    let replay = client.submit_command(signed).await.unwrap().into_inner();
    assert!(!replay.accepted);
    assert_eq!(replay.reason, "nonce_replayed", "{replay:?}");
    drop(client);
    assert!(server.terminate().success(), "{}", server.stderr());
    // Nothing of the first run was lost: telemetry appended, the rollback file moved aside.
    let lines_after = std::fs::read_to_string(tmp.path().join("telemetry.jsonl")).unwrap().lines().count();
    assert!(lines_after > lines_before, "{lines_after} lines after, {lines_before} before");
    assert!(tmp.path().join("kasmina-rollback.json").exists());
    assert!(tmp.path().join("kasmina-rollback.json.1").exists());
}

#[test]
fn serve_refuses_to_start_without_a_key() {
    let out = kasmina().env_remove("ESPER_LEYLINE_SECRET").args(["serve", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "it never listened");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no signing key"));
}

/// Telemetry streams are bounded (64): one more is refused with RESOURCE_EXHAUSTED instead of
/// costing a thread, and closing one frees its slot; Health keeps answering throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_streams_are_bounded_and_released() {
    let mut server = Server::start(&[]);
    let mut client = server.client().await;
    let mut open = Vec::new();
    for _ in 0..64 {
        open.push(stream(&mut client, TelemetryLevel::Critical).await);
    }
    let refused = client.stream_telemetry(TelemetryRequest { min_level: TelemetryLevel::Critical as i32 }).await;
    assert_eq!(refused.err().map(|s| s.code()), Some(tonic::Code::ResourceExhausted));
    assert!(client.health(HealthRequest {}).await.is_ok(), "health answers with every stream slot taken");
    drop(open.pop());
    // The bridge notices the closed stream within a few idle periods and frees the slot.
    let mut freed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if client.stream_telemetry(TelemetryRequest { min_level: TelemetryLevel::Critical as i32 }).await.is_ok() {
            freed = true;
            break;
        }
    }
    assert!(freed, "a closed stream's slot is released");
    drop(open);
    assert!(server.terminate().success(), "stderr:\n{}", server.stderr());
}

/// With a read token, every read needs `authorization: Bearer TOKEN`; commands stay
/// authenticated by their own signatures. Off loopback, serve refuses to start without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_the_read_token_when_one_is_set() {
    const TOKEN: &str = "it-read-token-0123456789";
    let mut server = Server::start(&["--read-token", TOKEN]);
    let mut client = server.client().await;
    let denied = client.get_system_state(SystemStateRequest {}).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::Unauthenticated);
    assert_eq!(client.health(HealthRequest {}).await.unwrap_err().code(), tonic::Code::Unauthenticated);
    let refused = client.stream_telemetry(TelemetryRequest { min_level: TelemetryLevel::Critical as i32 }).await;
    assert_eq!(refused.err().map(|s| s.code()), Some(tonic::Code::Unauthenticated));
    let mut wrong = tonic::Request::new(SystemStateRequest {});
    wrong.metadata_mut().insert("authorization", "Bearer not-the-token-at-all".parse().unwrap());
    assert_eq!(client.get_system_state(wrong).await.unwrap_err().code(), tonic::Code::Unauthenticated);
    let mut right = tonic::Request::new(SystemStateRequest {});
    right.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    assert_eq!(client.get_system_state(right).await.unwrap().into_inner().seed_states.len(), 2);
    // Commands carry their own authentication and need no read token.
    let receipt = client.submit_command(germinate("it-token-g1", "it-token-seed", "BP001")).await.unwrap().into_inner();
    assert!(receipt.accepted, "{receipt:?}");
    assert!(server.terminate().success(), "stderr:\n{}", server.stderr());

    let out = kasmina().args(["serve", "--listen", "0.0.0.0:0"]).env("ESPER_LEYLINE_SECRET", SECRET).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--read-token"), "{}", String::from_utf8_lossy(&out.stderr));
    // A token is not enough off loopback: the wire needs TLS (or an explicit plaintext choice).
    let out = kasmina()
        .args(["serve", "--listen", "0.0.0.0:0", "--read-token", TOKEN])
        .env("ESPER_LEYLINE_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs TLS"), "{}", String::from_utf8_lossy(&out.stderr));
}

fn tls_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kasmina-server/tests/fixtures").join(name)
}

/// A private copy of a fixture key (serve and send refuse nothing here, but the server refuses a
/// key readable by others).
fn private_copy(dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(tls_fixture(name), &to).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    to
}

/// `serve` with mTLS required, and `send` over it: with the client certificate the command is
/// applied; without it the connection is refused.
#[test]
fn serve_over_mtls_and_send_with_a_client_certificate() {
    let keys = tempfile::tempdir().unwrap();
    let server_key = private_copy(keys.path(), "server.key");
    let mut server = Server::start(&[
        "--tls-cert",
        tls_fixture("server.pem").to_str().unwrap(),
        "--tls-key",
        server_key.to_str().unwrap(),
        "--tls-client-ca",
        tls_fixture("ca.pem").to_str().unwrap(),
        "--require-client-cert",
    ]);
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let url = format!("https://localhost:{port}");
    let send = |with_cert: bool, id: &str| {
        let mut cmd = kasmina();
        cmd.args(["send", "--server", &url, "--timeout-secs", "10", "--ca"])
            .arg(tls_fixture("ca.pem"))
            .args(["--type", "seed", "--op", "germinate", "--seed-id", "mtls-seed", "--blueprint", "BP001"])
            .args(["--command-id", id]);
        if with_cert {
            cmd.arg("--client-cert").arg(tls_fixture("client.pem")).arg("--client-key").arg(tls_fixture("client.key"));
        }
        cmd.output().unwrap()
    };
    let ok = send(true, "mtls-send-1");
    assert!(
        ok.status.success(),
        "stdout {} stderr {}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("\"accepted\": true"),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let refused = send(false, "mtls-send-2");
    assert!(!refused.status.success(), "no client certificate must be refused");
    assert!(server.terminate().success(), "stderr:\n{}", server.stderr());
}
