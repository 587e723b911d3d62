//! Oona throughput with Redis on loopback (issue 18's figures):
//!
//! - **commands end to end**: signed `AdaptationCommand` entries published to `oona.normal`
//!   (pipelined, as a burst), read by the [`Consumer`], verified, applied at the safe points of
//!   a trainer stepping a tiny host beside it, receipted and acknowledged — from the first
//!   publish to the last acknowledgement;
//! - **telemetry published**: packets handed to the [`OonaSink`] until every one is on
//!   `oona.telemetry`.
//!
//! ```sh
//! cargo run --release -p kasmina-oona --example throughput               # starts redis-server itself
//! cargo run --release -p kasmina-oona --example throughput -- redis://127.0.0.1:6379 5000 20000
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use candle_core::{DType, Device, Tensor, Var};
use kasmina_oona::{Consumer, OonaConfig, OonaSink, encode_entry};
use kasmina_runtime::reexports::security::KeyRing;
use kasmina_runtime::reexports::telemetry::{NullSink, Telemetry, TelemetryConfig, TelemetrySink};
use kasmina_runtime::{Kasmina, StepReport, blueprint::builtin};
use leyline::adaptation_command::Payload;
use leyline::{AdaptationCommand, BusMessageType, CommandOptimizerAdjustment, CommandType, Message, TelemetryPacket};

const SECRET: &str = "kasmina-oona-bench-secret";
const WIDTH: usize = 16;

fn command(i: usize) -> AdaptationCommand {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    AdaptationCommand {
        version: 1,
        command_id: format!("bench-{i}-{}", now.as_nanos()),
        command_type: CommandType::CommandOptimizer as i32,
        target_seed_id: "no-such-seed".into(),
        issued_at: Some(leyline::wkt::Timestamp { seconds: now.as_secs() as i64, nanos: 0 }),
        issued_by: "bench".into(),
        payload: Some(Payload::OptimizerAdjustment(CommandOptimizerAdjustment {
            optimizer_id: "adamw".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, mut server) = match args.first() {
        Some(url) => (url.clone(), None),
        None => {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let dir = tempfile::tempdir().unwrap();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .current_dir(dir.path())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server (or pass a redis:// URL)");
            std::thread::sleep(Duration::from_millis(300));
            (format!("redis://127.0.0.1:{port}"), Some((child, dir)))
        }
    };
    let commands: usize = args.get(1).map_or(2000, |n| n.parse().unwrap());
    let packets: usize = args.get(2).map_or(20_000, |n| n.parse().unwrap());
    let keys = KeyRing::with_key("default", SECRET).unwrap();

    // The runtime and a trainer stepping beside the bus.
    let lib = tempfile::tempdir().unwrap();
    let host = Var::from_tensor(&Tensor::ones((WIDTH, WIDTH), DType::F32, &Device::Cpu).unwrap()).unwrap();
    let kasmina = Kasmina::builder()
        .signing_keys(keys.clone())
        .telemetry(Telemetry::new(NullSink, TelemetryConfig::default()).unwrap())
        .host_vars(vec![("host.w".to_owned(), host.clone())])
        .blueprints(builtin::write_library(lib.path(), &[WIDTH], 1).unwrap())
        .build()
        .unwrap();
    let slot = kasmina.slot("hidden", WIDTH).unwrap();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let trainer = {
        let (k, h, stop) = (kasmina.clone(), host.clone(), stop_tx.subscribe());
        std::thread::spawn(move || {
            let x = Tensor::ones((4, WIDTH), DType::F32, &Device::Cpu).unwrap();
            let mut steps = 0u64;
            while !*stop.borrow() {
                let loss = slot.forward(&x.matmul(h.as_tensor()).unwrap()).unwrap().sqr().unwrap().mean_all().unwrap();
                let grads = loss.backward().unwrap();
                k.on_step(&grads, StepReport::new(loss.to_scalar::<f32>().unwrap())).unwrap();
                steps += 1;
            }
            steps
        })
    };
    let mut config = OonaConfig::new(url.clone());
    config.consumer = "bench".into();
    config.block = Duration::from_millis(5);
    config.batch = 256;
    let consumer = Consumer::connect(config.clone(), kasmina.clone()).await.unwrap();
    let stats = consumer.stats();
    let consuming = tokio::spawn(consumer.run(stop.clone()));

    let mut conn = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let entries: Vec<_> = (0..commands)
        .map(|i| encode_entry(BusMessageType::AdaptationCommand, command(i).encode_to_vec(), &keys).unwrap())
        .collect();
    let started = Instant::now();
    let mut pipe = redis::pipe();
    for fields in &entries {
        pipe.cmd("XADD").arg("oona.normal").arg("*").arg(fields).ignore();
    }
    let () = pipe.query_async(&mut conn).await.unwrap();
    while stats.acked.load(Ordering::Relaxed) < commands as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(started.elapsed() < Duration::from_secs(300), "stalled: {stats:?}");
    }
    let e2e = started.elapsed();

    let (sink, writing) = OonaSink::start(config.clone(), keys.clone(), stop.clone()).await.unwrap();
    let packet = TelemetryPacket { packet_id: "p".into(), source_subsystem: "kasmina".into(), ..Default::default() };
    let started = Instant::now();
    let mut sent = 0;
    while sent < packets {
        sink.send(&packet).unwrap();
        sent += 1;
        if sink.queued().0 >= config.publish_buffer - 1 {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    while sink.queued() != (0, 0) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let published = started.elapsed();
    let dropped = sink.stats().dropped.load(Ordering::Relaxed);

    stop_tx.send(true).unwrap();
    let _ = consuming.await;
    let _ = writing.await;
    let steps = trainer.join().unwrap();
    println!(
        "commands end to end (publish -> verify -> safe point -> receipt -> ack): {commands} in {:.3} s = {:.0}/s \
         ({steps} trainer steps meanwhile)",
        e2e.as_secs_f64(),
        commands as f64 / e2e.as_secs_f64()
    );
    println!(
        "telemetry packets published: {} in {:.3} s = {:.0}/s ({dropped} dropped)",
        packets as u64 - dropped,
        published.as_secs_f64(),
        (packets as u64 - dropped) as f64 / published.as_secs_f64()
    );
    if let Some((mut child, _dir)) = server.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}
