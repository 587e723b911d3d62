//! Kasmina on a real Redis (decisions D12). Each test starts its own `redis-server` on a free
//! loopback port (in a temporary directory, no persistence) and stops it. They need the
//! `redis-server` binary: `.ci/run` installs it and runs them with `--ignored`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use candle_core::{DType, Device, Tensor, Var};
use kasmina_oona::{Consumer, OonaConfig, OonaSink, encode_entry};
use kasmina_runtime::reexports::security::{KeyRing, sign};
use kasmina_runtime::reexports::telemetry::{Telemetry, TelemetryConfig, TelemetrySink};
use kasmina_runtime::{Kasmina, KasminaConfig, StepReport, blueprint::builtin};
use leyline::adaptation_command::Payload;
use leyline::{
    AdaptationCommand, BusEnvelope, BusMessageType, CommandSeedOperation, CommandType, Message, SeedLifecycleStage,
    SeedOperation, TelemetryLevel, TelemetryPacket, wkt::Timestamp,
};
use redis::AsyncCommands;

const SECRET: &str = "kasmina-oona-test-secret";
const WIDTH: usize = 16;

/// A `redis-server` of our own, stopped on drop.
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut r = Self { child: None, port, dir: tempfile::tempdir().unwrap() };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let bin = std::env::var("KASMINA_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{bin}` ({e}): install redis-server (.ci/run does)"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn keys() -> KeyRing {
    KeyRing::with_key("default", SECRET).unwrap()
}

/// A runtime with one 16-wide slot over a one-matrix host, its telemetry to `sink`.
fn runtime(sink: impl TelemetrySink + 'static) -> (Kasmina, Var, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let host = Var::from_tensor(&Tensor::ones((WIDTH, WIDTH), DType::F32, &Device::Cpu).unwrap()).unwrap();
    let mut config = KasminaConfig::default();
    config.training_steps = 10_000;
    let kasmina = Kasmina::builder()
        .config(config)
        .signing_keys(keys())
        .telemetry(Telemetry::new(sink, TelemetryConfig::default()).unwrap())
        .host_vars(vec![("host.w".to_owned(), host.clone())])
        .blueprints(builtin::write_library(dir.path(), &[WIDTH], 1).unwrap())
        .build()
        .unwrap();
    kasmina.slot("hidden", WIDTH).unwrap();
    (kasmina, host, dir)
}

fn step(kasmina: &Kasmina, host: &Var) {
    let slot = kasmina.get_slot("hidden").unwrap();
    let x = Tensor::ones((4, WIDTH), DType::F32, &Device::Cpu).unwrap();
    let loss = slot.forward(&x.matmul(host.as_tensor()).unwrap()).unwrap().sqr().unwrap().mean_all().unwrap();
    let grads = loss.backward().unwrap();
    kasmina.on_step(&grads, StepReport::new(loss.to_scalar::<f32>().unwrap())).unwrap();
}

fn germinate(id: &str, seed: &str) -> AdaptationCommand {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    AdaptationCommand {
        version: 1,
        command_id: id.into(),
        command_type: CommandType::CommandSeed as i32,
        target_seed_id: seed.into(),
        issued_at: Some(Timestamp { seconds: now.as_secs() as i64, nanos: 0 }),
        issued_by: "tamiyo".into(),
        payload: Some(Payload::SeedOperation(CommandSeedOperation {
            operation: SeedOperation::SeedOpGerminate as i32,
            blueprint_id: builtin::RESIDUAL_MLP.into(),
            parameters: Default::default(),
        })),
        annotations: [("slot".to_owned(), "hidden".to_owned())].into(),
        ..Default::default()
    }
}

async fn xadd(conn: &mut redis::aio::MultiplexedConnection, stream: &str, fields: &[(&str, Vec<u8>)]) -> String {
    conn.xadd(stream, "*", fields).await.unwrap()
}

async fn pending(conn: &mut redis::aio::MultiplexedConnection, stream: &str, group: &str) -> u64 {
    let v: redis::Value = redis::cmd("XPENDING").arg(stream).arg(group).query_async(conn).await.unwrap();
    match v {
        redis::Value::Array(items) => redis::from_redis_value::<u64>(items[0].clone()).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn config(redis: &Redis, consumer: &str) -> OonaConfig {
    let mut c = OonaConfig::new(redis.url());
    c.consumer = consumer.into();
    c.block = Duration::from_millis(50);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (.ci/run starts these with --ignored)"]
async fn a_signed_command_from_the_bus_is_applied_once_and_acknowledged_after_its_receipt() {
    let redis = Redis::start();
    let (kasmina, host, _dir) = runtime(kasmina_runtime::reexports::telemetry::NullSink);
    let mut consumer = Consumer::connect(config(&redis, "k1"), kasmina.clone()).await.unwrap();
    let mut conn = redis.conn().await;
    let fields =
        encode_entry(BusMessageType::AdaptationCommand, germinate("bus-g1", "seed-1").encode_to_vec(), &keys())
            .unwrap();
    xadd(&mut conn, "oona.normal", &fields).await;
    assert_eq!(consumer.poll().await.unwrap(), 1);
    assert_eq!(consumer.in_flight(), 1, "not acknowledged before its safe point");
    assert_eq!(pending(&mut conn, "oona.normal", "kasmina").await, 1);
    step(&kasmina, &host);
    consumer.poll().await.unwrap();
    assert_eq!(consumer.in_flight(), 0);
    assert_eq!(pending(&mut conn, "oona.normal", "kasmina").await, 0, "acknowledged after the receipt");
    // Germinated at that safe point, and at once into TRAINING (G1 at germination).
    assert_eq!(kasmina.get_slot("hidden").unwrap().stage(), SeedLifecycleStage::SeedStageTraining);
    // Redelivered (Tamiyo published it twice): a replay, acknowledged, applied once.
    xadd(&mut conn, "oona.emergency", &fields).await;
    consumer.poll().await.unwrap();
    let stats = consumer.stats();
    assert_eq!((stats.accepted.load(Ordering::Relaxed), stats.rejected.load(Ordering::Relaxed)), (1, 1));
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 0, "a replay is not a bad entry");
    assert_eq!(pending(&mut conn, "oona.emergency", "kasmina").await, 0);
    assert_eq!(kasmina.seed_summaries().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (.ci/run starts these with --ignored)"]
async fn unsigned_forged_and_undecodable_entries_are_dead_lettered_without_effect() {
    let redis = Redis::start();
    let (kasmina, _host, _dir) = runtime(kasmina_runtime::reexports::telemetry::NullSink);
    let mut consumer = Consumer::connect(config(&redis, "k1"), kasmina.clone()).await.unwrap();
    let mut conn = redis.conn().await;
    let good = encode_entry(BusMessageType::AdaptationCommand, germinate("bus-f1", "seed-1").encode_to_vec(), &keys())
        .unwrap();
    let forged_sig = sign(b"another-secret-of-16-bytes", &good[0].1).into_bytes();
    let garbage = vec![0xffu8; 7];
    let entries: [Vec<(&str, Vec<u8>)>; 4] = [
        vec![("payload", good[0].1.clone())],
        vec![("payload", good[0].1.clone()), ("signature", forged_sig)],
        vec![("payload", garbage.clone()), ("signature", sign(SECRET.as_bytes(), &garbage).into_bytes())],
        vec![("bootstrap", Vec::new())],
    ];
    for e in &entries {
        xadd(&mut conn, "oona.normal", e).await;
    }
    while consumer.poll().await.unwrap() > 0 {}
    let dead: redis::streams::StreamRangeReply = conn.xrange_all("oona.deadletter").await.unwrap();
    let reasons: Vec<String> =
        dead.ids.iter().map(|e| redis::from_redis_value::<String>(e.map["reason"].clone()).unwrap()).collect();
    assert_eq!(reasons, ["missing_signature", "invalid_signature", "malformed_command"]);
    assert_eq!(pending(&mut conn, "oona.normal", "kasmina").await, 0, "nothing stays pending");
    assert!(kasmina.seed_summaries().is_empty(), "no entry had an effect");
    assert_eq!(consumer.stats().ignored.load(Ordering::Relaxed), 1, "the bootstrap entry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (.ci/run starts these with --ignored)"]
async fn a_dead_consumers_pending_entry_is_claimed_and_applied() {
    let redis = Redis::start();
    let (kasmina, host, _dir) = runtime(kasmina_runtime::reexports::telemetry::NullSink);
    let mut conn = redis.conn().await;
    let mut dead = Consumer::connect(config(&redis, "dead"), kasmina.clone()).await.unwrap();
    let fields =
        encode_entry(BusMessageType::AdaptationCommand, germinate("bus-c1", "seed-1").encode_to_vec(), &keys())
            .unwrap();
    // The entry is delivered to `dead`, which dies before its command runs: the entry stays
    // pending under `dead`, and its command never reached a runtime that survived.
    let (other, _h, _d) = runtime(kasmina_runtime::reexports::telemetry::NullSink);
    let mut doomed = Consumer::connect(config(&redis, "dead"), other).await.unwrap();
    xadd(&mut conn, "oona.normal", &fields).await;
    doomed.poll().await.unwrap();
    drop(doomed);
    drop(dead.stats());
    let mut survivor_config = config(&redis, "survivor");
    survivor_config.claim_idle = Duration::from_millis(100);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut survivor = Consumer::connect(survivor_config, kasmina.clone()).await.unwrap();
    survivor.poll().await.unwrap();
    assert_eq!(survivor.stats().claimed.load(Ordering::Relaxed), 1);
    step(&kasmina, &host);
    survivor.poll().await.unwrap();
    assert_eq!(pending(&mut conn, "oona.normal", "kasmina").await, 0);
    assert_eq!(kasmina.get_slot("hidden").unwrap().stage(), SeedLifecycleStage::SeedStageTraining);
    let _ = dead.poll().await;
}

fn packet(level: TelemetryLevel, id: &str) -> TelemetryPacket {
    let mut p = TelemetryPacket { packet_id: id.into(), source_subsystem: "kasmina".into(), ..Default::default() };
    p.set_level(level);
    p
}

async fn read_packets(conn: &mut redis::aio::MultiplexedConnection, stream: &str) -> Vec<TelemetryPacket> {
    let reply: redis::streams::StreamRangeReply = conn.xrange_all(stream).await.unwrap();
    reply
        .ids
        .iter()
        .map(|e| {
            let payload = redis::from_redis_value::<Vec<u8>>(e.map["payload"].clone()).unwrap();
            let signature = redis::from_redis_value::<String>(e.map["signature"].clone()).unwrap();
            assert_eq!(signature, sign(SECRET.as_bytes(), &payload), "every entry is signed");
            let envelope = BusEnvelope::decode(payload.as_slice()).unwrap();
            assert_eq!(envelope.message_type(), BusMessageType::Telemetry);
            TelemetryPacket::decode(envelope.payload.as_slice()).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (.ci/run starts these with --ignored)"]
async fn telemetry_is_published_signed_and_critical_packets_survive_a_redis_restart() {
    let mut redis = Redis::start();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut cfg = config(&redis, "k1");
    cfg.publish_buffer = 4;
    let (sink, task) = OonaSink::start(cfg, keys(), stop).await.unwrap();
    sink.send(&packet(TelemetryLevel::Info, "p-info")).unwrap();
    sink.send(&packet(TelemetryLevel::Critical, "p-critical-1")).unwrap();
    let mut conn = redis.conn().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.queued() != (0, 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Both arrive. Their order is not asserted here: the writer may take "p-info" before
    // "p-critical-1" is queued. Priority is among what waits together, checked after the restart.
    let mut ids: Vec<String> =
        read_packets(&mut conn, "oona.telemetry").await.into_iter().map(|p| p.packet_id).collect();
    ids.sort();
    assert_eq!(ids, ["p-critical-1", "p-info"]);
    let emergency = read_packets(&mut conn, "oona.emergency").await;
    assert_eq!(emergency.len(), 1);

    // Redis goes away: CRITICAL packets are kept and sent first once it is back; NORMAL ones
    // wait in their bounded buffer (4 here), the rest are dropped and counted. The trainer's
    // `send` never blocks.
    redis.stop();
    let started = Instant::now();
    sink.send(&packet(TelemetryLevel::Critical, "p-critical-2")).unwrap();
    for i in 0..10 {
        sink.send(&packet(TelemetryLevel::Info, &format!("p-info-{i}"))).unwrap();
    }
    assert!(started.elapsed() < Duration::from_millis(100), "send does not wait on Redis");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.stats().dropped.load(Ordering::Relaxed), 6);
    assert_eq!(sink.queued(), (4, 2), "4 NORMAL packets wait; the CRITICAL one, for both streams");
    redis.spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.queued() != (0, 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut conn = redis.conn().await;
    let after: Vec<String> = read_packets(&mut conn, "oona.emergency").await.into_iter().map(|p| p.packet_id).collect();
    assert_eq!(after, ["p-critical-2"], "delivered after the restart (the new server starts empty)");
    let telemetry: Vec<String> =
        read_packets(&mut conn, "oona.telemetry").await.into_iter().map(|p| p.packet_id).collect();
    assert_eq!(telemetry, ["p-critical-2", "p-info-0", "p-info-1", "p-info-2", "p-info-3"], "CRITICAL first");
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (.ci/run starts these with --ignored)"]
async fn the_consumer_survives_a_redis_restart_and_applies_no_command_twice() {
    let mut redis = Redis::start();
    let (kasmina, host, _dir) = runtime(kasmina_runtime::reexports::telemetry::NullSink);
    let consumer = Consumer::connect(config(&redis, "k1"), kasmina.clone()).await.unwrap();
    let stats = consumer.stats();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(consumer.run(stop));
    // A trainer stepping beside the bus.
    let trainer = {
        let (k, h) = (kasmina.clone(), host.clone());
        let stop = stop_tx.subscribe();
        std::thread::spawn(move || {
            while !*stop.borrow() {
                step(&k, &h);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let publish = |redis: &Redis, id: &str| {
        let fields = encode_entry(
            BusMessageType::AdaptationCommand,
            germinate(id, &format!("seed-{id}")).encode_to_vec(),
            &keys(),
        )
        .unwrap();
        let url = redis.url();
        async move {
            let mut conn = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
            xadd(&mut conn, "oona.normal", &fields).await;
            fields
        }
    };
    let first = publish(&redis, "before").await;
    let wait_accepted = |n: u64| {
        let stats = std::sync::Arc::clone(&stats);
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while stats.accepted.load(Ordering::Relaxed) < n && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stats.accepted.load(Ordering::Relaxed)
        }
    };
    assert_eq!(wait_accepted(1).await, 1);
    // Redis dies and comes back empty (no persistence), on the same port.
    redis.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.spawn();
    publish(&redis, "after").await;
    assert_eq!(wait_accepted(2).await, 2, "the consumer reconnected and read on");
    // The first entry, redelivered after the restart, is refused as a replay.
    let mut conn = redis.conn().await;
    xadd(&mut conn, "oona.normal", &first).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats.rejected.load(Ordering::Relaxed) < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats.rejected.load(Ordering::Relaxed), 1);
    assert_eq!(stats.accepted.load(Ordering::Relaxed), 2, "no command applied twice");
    assert!(stats.errors.load(Ordering::Relaxed) >= 1, "the outage was seen and retried");
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    trainer.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (.ci/run starts these with --ignored)"]
async fn a_stream_trimmed_under_the_consumer_leaves_nothing_pending() {
    let redis = Redis::start();
    let (kasmina, host, _dir) = runtime(kasmina_runtime::reexports::telemetry::NullSink);
    let mut conn = redis.conn().await;
    let mut cfg = config(&redis, "k1");
    cfg.claim_idle = Duration::from_millis(50);
    let mut consumer = Consumer::connect(cfg, kasmina.clone()).await.unwrap();
    for i in 0..5 {
        let fields = encode_entry(
            BusMessageType::AdaptationCommand,
            germinate(&format!("trim-{i}"), &format!("seed-{i}")).encode_to_vec(),
            &keys(),
        )
        .unwrap();
        xadd(&mut conn, "oona.normal", &fields).await;
    }
    consumer.poll().await.unwrap();
    assert_eq!(consumer.in_flight(), 5);
    // Trimmed away while its entries are still pending.
    let _: u64 = redis::cmd("XTRIM").arg("oona.normal").arg("MAXLEN").arg(0).query_async(&mut conn).await.unwrap();
    step(&kasmina, &host);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        consumer.poll().await.unwrap();
    }
    assert_eq!(consumer.in_flight(), 0);
    assert_eq!(pending(&mut conn, "oona.normal", "kasmina").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (.ci/run starts these with --ignored)"]
async fn a_slow_consumer_falls_behind_and_catches_up_losing_nothing() {
    let redis = Redis::start();
    let (kasmina, host, _dir) = runtime(kasmina_runtime::reexports::telemetry::NullSink);
    let mut cfg = config(&redis, "slow");
    cfg.batch = 4;
    let consumer = Consumer::connect(cfg, kasmina.clone()).await.unwrap();
    let stats = consumer.stats();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(consumer.run(stop));
    // Safe points are rare (one every 20 ms) and reads are small: the stream runs ahead.
    let trainer = {
        let (k, h, stop) = (kasmina.clone(), host.clone(), stop_tx.subscribe());
        std::thread::spawn(move || {
            while !*stop.borrow() {
                step(&k, &h);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut conn = redis.conn().await;
    const N: u64 = 120;
    for i in 0..N {
        let cmd = germinate(&format!("slow-{i}"), &format!("seed-{i}"));
        let fields = encode_entry(BusMessageType::AdaptationCommand, cmd.encode_to_vec(), &keys()).unwrap();
        xadd(&mut conn, "oona.normal", &fields).await;
    }
    let length: u64 = conn.xlen("oona.normal").await.unwrap();
    assert_eq!(length, N);
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats.acked.load(Ordering::Relaxed) < N && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats.accepted.load(Ordering::Relaxed), N, "every command verified once");
    assert_eq!(stats.acked.load(Ordering::Relaxed), N, "every entry acknowledged after its receipt");
    assert_eq!(stats.rejected.load(Ordering::Relaxed) + stats.dead_lettered.load(Ordering::Relaxed), 0);
    assert_eq!(pending(&mut conn, "oona.normal", "kasmina").await, 0);
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    trainer.join().unwrap();
}

/// The Redis `.ci/run` starts and stops (`KASMINA_REDIS_URL`), or one of this test's own: a
/// signed command round trip on streams no other test uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (.ci/run starts these with --ignored)"]
async fn a_command_round_trip_on_the_redis_ci_started() {
    let own = std::env::var("KASMINA_REDIS_URL").is_err().then(Redis::start);
    let url = std::env::var("KASMINA_REDIS_URL").unwrap_or_else(|_| own.as_ref().unwrap().url());
    let prefix =
        format!("it-{}-{}", std::process::id(), SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos());
    let mut cfg = OonaConfig::new(url.clone());
    cfg.normal_stream = format!("{prefix}.normal");
    cfg.emergency_stream = format!("{prefix}.emergency");
    cfg.telemetry_stream = format!("{prefix}.telemetry");
    cfg.dead_letter_stream = format!("{prefix}.deadletter");
    cfg.block = Duration::from_millis(50);
    let (kasmina, host, _dir) = runtime(kasmina_runtime::reexports::telemetry::NullSink);
    let mut consumer = Consumer::connect(cfg.clone(), kasmina.clone()).await.unwrap();
    let mut conn = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let fields =
        encode_entry(BusMessageType::AdaptationCommand, germinate("ci-1", "seed-ci").encode_to_vec(), &keys()).unwrap();
    xadd(&mut conn, &cfg.normal_stream, &fields).await;
    assert_eq!(consumer.poll().await.unwrap(), 1);
    step(&kasmina, &host);
    consumer.poll().await.unwrap();
    assert_eq!(pending(&mut conn, &cfg.normal_stream, "kasmina").await, 0);
    assert_eq!(kasmina.seed_summaries()[0].seed_id, "seed-ci");
}
