"""Interop test: a Python peer drives `kasmina serve` the way Esper's Python Tamiyo does.

The Leyline bindings are generated from `proto/` with grpcio-tools at test time. Commands are
built with the generated classes, serialised by Python's protobuf, signed with HMAC-SHA256 over
exactly those bytes (standard base64) and sent in a `SignedCommand` envelope, or in the legacy
form with the signature in `annotations["signature"]`.

Environment: KASMINA_BIN (the `kasmina` binary), KASMINA_PROTO_DIR (the `proto/` directory).
Every wait is bounded; the server is always terminated.
"""

import base64
import collections
import hashlib
import hmac
import importlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import grpc
import pytest

SECRET = "kasmina-interop-secret"  # at least 16 bytes: shorter secrets are refused (WeakKey)
START_TIMEOUT = 60.0
LIFECYCLE_TIMEOUT = 75.0
RPC_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def bindings(tmp_path_factory):
    """Generates and imports the Python bindings of leyline.proto, control.proto and
    checkpoint.proto (once: a second copy would clash in protobuf's descriptor pool)."""
    proto_dir = Path(os.environ.get("KASMINA_PROTO_DIR", Path(__file__).resolve().parents[2] / "proto"))
    out = tmp_path_factory.mktemp("leyline_py")
    names = ("leyline.proto", "control.proto", "checkpoint.proto")
    protos = [str(proto_dir / "esper/leyline/v1" / name) for name in names]
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}", *protos],
        check=True,
        timeout=60,
    )
    sys.path.insert(0, str(out))
    try:
        return {
            "leyline": importlib.import_module("esper.leyline.v1.leyline_pb2"),
            "control": importlib.import_module("esper.leyline.v1.control_pb2"),
            "control_grpc": importlib.import_module("esper.leyline.v1.control_pb2_grpc"),
            "checkpoint": importlib.import_module("esper.leyline.v1.checkpoint_pb2"),
        }
    finally:
        sys.path.remove(str(out))


@pytest.fixture(scope="module")
def pb(bindings):
    """(leyline_pb2, control_pb2, control_pb2_grpc)."""
    return bindings["leyline"], bindings["control"], bindings["control_grpc"]


class Server:
    """A `kasmina serve` process on a free loopback port."""

    def __init__(self, workdir: Path, extra_args=()):
        binary = os.environ.get("KASMINA_BIN")
        assert binary, "set KASMINA_BIN to the kasmina binary"
        env = {k: v for k, v in os.environ.items() if k not in ("ESPER_LEYLINE_KEYS", "ESPER_LEYLINE_KEY_FILE")}
        env["ESPER_LEYLINE_SECRET"] = SECRET
        self.workdir = workdir
        self.stderr_path = workdir / "stderr.log"
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--steps-per-stage", "8", "--embargo-secs", "1",
             "--telemetry", str(workdir / "telemetry.jsonl"), *extra_args],
            cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=self.stderr,
        )
        lines: "queue.Queue[bytes]" = queue.Queue()

        def read():
            for line in self.proc.stdout:
                lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        try:
            line = lines.get(timeout=START_TIMEOUT).decode().strip()
        except queue.Empty:
            self.kill()
            pytest.fail(f"no 'listening on' line within {START_TIMEOUT}s; stderr:\n{self.log()}")
        assert line.startswith("listening on "), line
        self.addr = line.removeprefix("listening on ")

    def log(self) -> str:
        self.stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def terminate(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the server did not stop within {timeout}s of SIGTERM; stderr:\n{self.log()}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("serve"))
    yield s
    s.kill()
    s.stderr.close()


@pytest.fixture(scope="module")
def stub(pb, server):
    _, _, control_grpc = pb
    channel = grpc.insecure_channel(server.addr)
    grpc.channel_ready_future(channel).result(timeout=RPC_TIMEOUT)
    yield control_grpc.KasminaControlStub(channel)
    channel.close()


# ---------------------------------------------------------------- Tamiyo's side


def sign(data: bytes) -> str:
    return base64.b64encode(hmac.new(SECRET.encode(), data, hashlib.sha256).digest()).decode()


def new_command(pb, command_type, seed_id="", **kwargs):
    leyline = pb[0]
    cmd = leyline.AdaptationCommand(
        version=1,
        command_id=f"py-{uuid.uuid4()}",
        command_type=command_type,
        target_seed_id=seed_id,
        issued_by="tamiyo-py",
        **kwargs,
    )
    cmd.issued_at.GetCurrentTime()
    return cmd


def seed_command(pb, operation, seed_id, blueprint_id="", slot=None):
    leyline = pb[0]
    cmd = new_command(
        pb,
        leyline.COMMAND_SEED,
        seed_id,
        seed_operation=leyline.CommandSeedOperation(operation=operation, blueprint_id=blueprint_id),
    )
    if slot:
        cmd.annotations["slot"] = slot
    return cmd


def envelope(pb, cmd):
    """The primary form: HMAC over the command's bytes as serialised here."""
    data = cmd.SerializeToString()
    return pb[0].SignedCommand(command=data, signature=sign(data), key_id="default")


def legacy(pb, cmd):
    """The legacy form: the signature in annotations["signature"], an envelope without signature."""
    cmd.annotations.pop("signature", None)
    cmd.annotations["signature"] = sign(cmd.SerializeToString(deterministic=True))
    return pb[0].SignedCommand(command=cmd.SerializeToString(deterministic=True))


def stage_name(pb, value) -> str:
    return pb[0].SeedLifecycleStage.Name(value)


def seed_stage(pb, stub, seed_id):
    state = stub.GetSystemState(pb[1].SystemStateRequest(), timeout=RPC_TIMEOUT)
    for s in state.seed_states:
        if s.seed_id == seed_id:
            return stage_name(pb, s.stage)
    return None


# ---------------------------------------------------------------- tests


def test_health_and_state_answer(pb, stub):
    health = stub.Health(pb[1].HealthRequest(), timeout=RPC_TIMEOUT)
    assert pb[0].HealthStatus.Name(health.status) in ("HEALTH_STATUS_HEALTHY", "HEALTH_STATUS_DEGRADED")
    state = stub.GetSystemState(pb[1].SystemStateRequest(), timeout=RPC_TIMEOUT)
    assert state.source_subsystem == "kasmina"
    assert len(state.seed_states) == 2, "the host has two seed slots"


FAILURE_PATH = ("SEED_STAGE_CULLED", "SEED_STAGE_EMBARGOED", "SEED_STAGE_RESETTING", "SEED_STAGE_DORMANT")


def follow(pb, stub, seed_id, deadline):
    """Follows a germinated seed until FOSSILIZED or the failure path, sending FOSSILIZE once it
    is PROBATIONARY (Kasmina refuses with `window_incomplete` until probation completes, and with
    `counterfactual_missing` until the trainer has measured the seed's contribution)."""
    leyline = pb[0]
    seen = []
    while time.monotonic() < deadline:
        stage = seed_stage(pb, stub, seed_id)
        if stage and (not seen or seen[-1] != stage):
            seen.append(stage)
        if stage == "SEED_STAGE_FOSSILIZED":
            return seen, "fossilized"
        if stage in FAILURE_PATH:
            return seen, "culled"
        if stage == "SEED_STAGE_PROBATIONARY":
            r = stub.SubmitCommand(envelope(pb, seed_command(pb, leyline.SEED_OP_FOSSILIZE, seed_id)), timeout=RPC_TIMEOUT)
            if r.accepted:
                continue
            if r.reason not in ("window_incomplete", "counterfactual_missing"):
                # G4 refused: the seed is culled; Tamiyo tries again with a new seed.
                return seen + [r.reason], "culled"
        time.sleep(0.05)
    return seen, "timeout"


class StageRecorder:
    """Records every `seed_stage` event of an INFO telemetry stream: stages can be shorter than
    a GetSystemState poll (8 steps take milliseconds), the stream sees each of them."""

    def __init__(self, pb, stub):
        leyline, control = pb[0], pb[1]
        self.stages = collections.defaultdict(list)
        self.fossilized = threading.Event()
        self.call = stub.StreamTelemetry(
            control.TelemetryRequest(min_level=leyline.TELEMETRY_LEVEL_INFO), timeout=LIFECYCLE_TIMEOUT + 30
        )
        self.call.initial_metadata()  # subscribed from here on
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for packet in self.call:
                for e in packet.events:
                    if e.description == "seed_stage":
                        self.stages[e.attributes["seed_id"]].append(e.attributes["stage"])
                        if e.attributes["stage"] == "SEED_STAGE_FOSSILIZED":
                            self.fossilized.set()
        except grpc.RpcError:
            pass  # cancelled at the end of the test

    def close(self):
        self.call.cancel()
        self.thread.join(timeout=10)


def test_tamiyo_grows_a_seed_to_fossilized(pb, stub):
    """Germinate BP001 and follow it to FOSSILIZED. On the plateaued host a short G1 window is
    close to a coin flip, so, like Tamiyo, germinate a fresh seed whenever one is culled (the
    slot frees after the one-second embargo and the reset)."""
    recorder = StageRecorder(pb, stub)
    try:
        grow_to_fossilized(pb, stub, recorder)
    finally:
        recorder.close()


def grow_to_fossilized(pb, stub, recorder):
    leyline = pb[0]
    deadline = time.monotonic() + LIFECYCLE_TIMEOUT
    history = []
    replay_checked = False
    while time.monotonic() < deadline:
        seed_id = f"py-seed-{len(history) + 1}"
        signed = envelope(pb, seed_command(pb, leyline.SEED_OP_GERMINATE, seed_id, "BP001", slot="input"))
        receipt = stub.SubmitCommand(signed, timeout=RPC_TIMEOUT)
        if not receipt.accepted and receipt.reason == "slot_occupied":
            time.sleep(0.1)  # the culled seed is still embargoed or resetting
            continue
        assert receipt.accepted, receipt
        assert receipt.reason == "ok"
        assert receipt.seed_id == seed_id
        if not replay_checked:
            replay = stub.SubmitCommand(signed, timeout=RPC_TIMEOUT)
            assert not replay.accepted
            assert replay.reason == "nonce_replayed"
            assert replay.command_id == receipt.command_id
            replay_checked = True
        stages, outcome = follow(pb, stub, seed_id, deadline)
        history.append((seed_id, stages, outcome))
        if outcome != "culled":
            break
    assert history and history[-1][2] == "fossilized", f"attempts: {history}"
    # The whole lifecycle, in order, as the telemetry stream reported it.
    assert recorder.fossilized.wait(timeout=10), f"no FOSSILIZED seed_stage event; attempts: {history}"
    seed_id = history[-1][0]
    assert recorder.stages[seed_id] == [
        "SEED_STAGE_GERMINATED",
        "SEED_STAGE_TRAINING",
        "SEED_STAGE_BLENDING",
        "SEED_STAGE_SHADOWING",
        "SEED_STAGE_PROBATIONARY",
        "SEED_STAGE_FOSSILIZED",
    ], f"stages of {seed_id}: {recorder.stages[seed_id]}; attempts: {history}"


def test_legacy_form_is_accepted(pb, stub):
    leyline = pb[0]
    cmd = seed_command(pb, leyline.SEED_OP_GERMINATE, "py-legacy-1", "BP002", slot="hidden2")
    receipt = stub.SubmitCommand(legacy(pb, cmd), timeout=RPC_TIMEOUT)
    assert receipt.accepted, receipt
    assert receipt.reason == "ok"
    assert receipt.command_id == cmd.command_id

    # A tampered legacy command is refused.
    cmd = new_command(pb, leyline.COMMAND_EMERGENCY)
    signed = legacy(pb, cmd)
    tampered = leyline.AdaptationCommand.FromString(signed.command)
    tampered.issued_by = "mallory"
    r = stub.SubmitCommand(leyline.SignedCommand(command=tampered.SerializeToString(deterministic=True)), timeout=RPC_TIMEOUT)
    assert not r.accepted
    assert r.reason == "invalid_signature"


def test_emergency_reaches_a_critical_stream(pb, stub):
    leyline, control = pb[0], pb[1]
    call = stub.StreamTelemetry(control.TelemetryRequest(min_level=leyline.TELEMETRY_LEVEL_CRITICAL), timeout=30)
    try:
        call.initial_metadata()  # subscribed before the command is sent
        receipt = stub.SubmitCommand(envelope(pb, new_command(pb, leyline.COMMAND_EMERGENCY)), timeout=RPC_TIMEOUT)
        assert receipt.accepted, receipt
        for packet in call:
            assert packet.level == leyline.TELEMETRY_LEVEL_CRITICAL
            if any(e.description == "emergency_cleanup" for e in packet.events):
                break
        else:
            pytest.fail("the stream ended without an emergency_cleanup event")
    finally:
        call.cancel()


def wait_final(pb, stub, command_id, timeout=30.0):
    """Polls GetReceipt until the command's receipt is no longer `queued`."""
    control = pb[1]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = stub.GetReceipt(control.ReceiptRequest(command_id=command_id), timeout=RPC_TIMEOUT)
        if r.status != control.RECEIPT_STATUS_QUEUED:
            return r
        time.sleep(0.05)
    pytest.fail(f"command {command_id} still queued after {timeout}s")


def test_queued_receipts_are_followed_by_their_final_receipt(pb, tmp_path_factory):
    """With `--receipt-wait-ms 0` SubmitCommand answers `queued` at once (decisions D14); the
    final receipt, applied or refused, comes from GetReceipt with its provenance."""
    leyline, control, control_grpc = pb
    s = Server(tmp_path_factory.mktemp("serve-queued"), extra_args=("--receipt-wait-ms", "0"))
    channel = grpc.insecure_channel(s.addr)
    try:
        grpc.channel_ready_future(channel).result(timeout=RPC_TIMEOUT)
        stub = control_grpc.KasminaControlStub(channel)
        cmd = seed_command(pb, leyline.SEED_OP_GERMINATE, "py-queued-1", "BP001", slot="input")
        queued = stub.SubmitCommand(envelope(pb, cmd), timeout=RPC_TIMEOUT)
        assert queued.accepted and queued.reason == "queued", queued
        assert queued.status == control.RECEIPT_STATUS_QUEUED
        final = wait_final(pb, stub, cmd.command_id)
        assert final.accepted and final.reason == "ok", final
        assert final.status == control.RECEIPT_STATUS_APPLIED
        assert final.seed_id == "py-queued-1"
        assert final.provenance.key_id == "default"
        assert final.provenance.form == control.COMMAND_FORM_ENVELOPE
        assert final.provenance.transport == control.COMMAND_TRANSPORT_GRPC

        # Verified and queued, then refused at its safe point: the refusal is not lost.
        bad = seed_command(pb, leyline.SEED_OP_START_GRAFTING, "py-no-such-seed")
        queued = stub.SubmitCommand(envelope(pb, bad), timeout=RPC_TIMEOUT)
        assert queued.accepted and queued.reason == "queued", queued
        final = wait_final(pb, stub, bad.command_id)
        assert not final.accepted
        assert final.reason == "unknown_seed"
        assert final.status == control.RECEIPT_STATUS_REFUSED

        with pytest.raises(grpc.RpcError) as err:
            stub.GetReceipt(control.ReceiptRequest(command_id="py-never-sent"), timeout=RPC_TIMEOUT)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        channel.close()
        assert s.terminate() == 0, s.log()
        s.stderr.close()


FIXTURES = Path(__file__).resolve().parents[2] / "crates" / "kasmina-server" / "tests" / "fixtures"


def test_grpcio_over_mtls_reads_with_its_certificate_and_is_refused_without(pb, tmp_path_factory):
    """grpcio's own TLS stack (BoringSSL) against the rustls server: with a client certificate
    from the trusted CA, commands and reads work; a client without one cannot connect at all
    (`--require-client-cert`); a garbage request body is INVALID_ARGUMENT."""
    leyline, control, control_grpc = pb
    workdir = tmp_path_factory.mktemp("serve-mtls")
    key = workdir / "server.key"
    key.write_bytes((FIXTURES / "server.key").read_bytes())
    key.chmod(0o600)
    s = Server(workdir, extra_args=(
        "--tls-cert", str(FIXTURES / "server.pem"), "--tls-key", str(key),
        "--tls-client-ca", str(FIXTURES / "ca.pem"), "--require-client-cert"))
    port = s.addr.rsplit(":", 1)[1]
    ca = (FIXTURES / "ca.pem").read_bytes()
    with_cert = grpc.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=(FIXTURES / "client.key").read_bytes(),
        certificate_chain=(FIXTURES / "client.pem").read_bytes()))
    anonymous = grpc.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(root_certificates=ca))
    try:
        grpc.channel_ready_future(with_cert).result(timeout=RPC_TIMEOUT)
        stub = control_grpc.KasminaControlStub(with_cert)
        state = stub.GetSystemState(control.SystemStateRequest(), timeout=RPC_TIMEOUT)
        assert len(state.seed_states) == 2
        cmd = seed_command(pb, leyline.SEED_OP_GERMINATE, "py-mtls-1", "BP001", slot="input")
        receipt = stub.SubmitCommand(envelope(pb, cmd), timeout=RPC_TIMEOUT)
        assert receipt.accepted, receipt

        raw = with_cert.unary_unary("/esper.leyline.v1.KasminaControl/SubmitCommand",
                                    request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as err:
            raw(b"\x0a\x7f\x01\x02", timeout=RPC_TIMEOUT)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value

        with pytest.raises(grpc.RpcError) as err:
            control_grpc.KasminaControlStub(anonymous).Health(control.HealthRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
    finally:
        with_cert.close()
        anonymous.close()
        assert s.terminate() == 0, s.log()
        s.stderr.close()


def test_sigterm_shuts_down_cleanly(server):
    code = server.terminate()
    assert code == 0, server.log()
    assert (server.workdir / "kasmina-rollback.json").is_file()
    assert (server.workdir / "telemetry.jsonl").stat().st_size > 0


@pytest.fixture(scope="module")
def checkpoint_pb(bindings):
    """checkpoint_pb2."""
    return bindings["checkpoint"]


def test_a_checkpoint_manifest_is_canonical_protobuf_json_with_true_hashes(pb, checkpoint_pb, tmp_path):
    """A demo's checkpoint, read the way any Esper service would: protobuf's own JSON parser,
    strict (an unknown field fails), and hashlib over the files it lists."""
    from google.protobuf import json_format

    leyline = pb[0]
    ckpt = tmp_path / "ckpt"
    run = subprocess.run(
        [os.environ["KASMINA_BIN"], "demo", "--seed", "1", "--epochs", "8", "--germinate-by", "2", "--quiet",
         "--out", str(tmp_path / "out"), "--checkpoint-dir", str(ckpt), "--halt-at-step", "200",
         "--latency-budget-ms", "60000"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 3, run.stderr
    directory = ckpt / "grown" / (ckpt / "grown" / "LATEST").read_text().strip()
    manifest = json_format.Parse((directory / "manifest.json").read_text(), checkpoint_pb.CheckpointManifest())
    assert manifest.schema_version == 1
    assert manifest.kasmina.step == 200
    assert {f.name for f in manifest.files} == {"kasmina.safetensors", "host.safetensors", "run.json"}
    for f in manifest.files:
        data = (directory / f.name).read_bytes()
        assert len(data) == f.size_bytes
        assert hashlib.sha256(data).hexdigest() == f.sha256
    seeds = {s.seed.seed_id: s.seed for s in manifest.kasmina.slots if s.HasField("seed")}
    adapter = seeds["seed-adapter"]
    assert adapter.lifecycle.stage == leyline.SEED_STAGE_TRAINING
    assert adapter.WhichOneof("state") == "live"
    assert adapter.live.WhichOneof("phase") == "training"
    assert len(adapter.kernel.artifact_sha256) == 64
    assert manifest.kasmina.nonces, "the accepted commands' nonces are saved"
    assert manifest.trainer["step"] == "200"


# ---------------------------------------------------------------- Oona (Redis Streams, D12)


class RedisServer:
    """A `redis-server` of the test's own on a free loopback port (no persistence)."""

    def __init__(self, workdir: Path):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [os.environ.get("KASMINA_REDIS_SERVER", "redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}"
        import redis

        self.client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=10)


class SharedRedis:
    """The Redis `.ci/run` started (KASMINA_REDIS_URL); it stops it."""

    def __init__(self, url: str):
        import redis

        self.url = url
        self.client = redis.Redis.from_url(url)
        self.client.ping()

    def stop(self):
        pass


@pytest.fixture(scope="module")
def oona(tmp_path_factory):
    """A Redis (the one `.ci/run` started, else one of our own) and `kasmina serve --oona` on it."""
    workdir = tmp_path_factory.mktemp("oona")
    shared = os.environ.get("KASMINA_REDIS_URL")
    redis_server = SharedRedis(shared) if shared else RedisServer(workdir)
    server = Server(workdir, ["--oona", redis_server.url])
    yield redis_server, server
    server.kill()
    server.stderr.close()
    redis_server.stop()


def bus_fields(pb, message_type, payload: bytes, signed=True):
    """An entry exactly as `OonaClient._publish_proto` writes it."""
    env = pb[0].BusEnvelope(message_type=message_type, payload=payload).SerializeToString()
    fields = {"payload": env}
    if signed:
        fields["signature"] = sign(env).encode()
    return fields


def read_bus(pb, client, stream, message_type, message_cls, start="-"):
    """Every entry of `stream` of `message_type`, its signature checked, decoded."""
    out = []
    for entry_id, fields in client.xrange(stream, min=start):
        env_bytes = fields.get(b"payload", b"")
        env = pb[0].BusEnvelope()
        env.ParseFromString(env_bytes)
        if env.message_type != message_type:
            continue  # not what this read is about (Tamiyo's own commands, for one)
        assert fields[b"signature"].decode() == sign(env_bytes), f"{stream} {entry_id}: bad signature"
        msg = message_cls()
        msg.ParseFromString(env.payload)
        out.append(msg)
    return out


ADVANCED = {"SEED_STAGE_TRAINING", "SEED_STAGE_BLENDING", "SEED_STAGE_SHADOWING", "SEED_STAGE_PROBATIONARY",
            "SEED_STAGE_FOSSILIZED", *FAILURE_PATH}


def test_tamiyo_on_the_bus_grows_a_seed_and_reads_state_and_signed_telemetry(pb, oona):
    leyline = pb[0]
    redis_server, _server = oona
    r = redis_server.client
    cmd = seed_command(pb, leyline.SEED_OP_GERMINATE, "bus-seed-1", "BP001", slot="hidden2")
    r.xadd("oona.normal", bus_fields(pb, leyline.BUS_MESSAGE_TYPE_ADAPTATION_COMMAND, cmd.SerializeToString()))
    deadline = time.monotonic() + LIFECYCLE_TIMEOUT
    stages = set()
    while time.monotonic() < deadline:
        for state in read_bus(pb, r, "oona.normal", leyline.BUS_MESSAGE_TYPE_SYSTEM_STATE, leyline.SystemStatePacket):
            for s in state.seed_states:
                if s.seed_id == "bus-seed-1":
                    stages.add(leyline.SeedLifecycleStage.Name(s.stage))
        if len(ADVANCED & stages) >= 2:
            break
        time.sleep(0.1)
    # With 8-step windows a stage can be shorter than an epoch: the per-epoch packets show the
    # seed somewhere along its path, at two stages at least.
    assert len(ADVANCED & stages) >= 2, f"the seed did not advance on oona.normal: {stages}"
    # Its receipt reached oona.telemetry, signed, as a `command_receipt` event.
    receipts = []
    while time.monotonic() < deadline and not receipts:
        packets = read_bus(pb, r, "oona.telemetry", leyline.BUS_MESSAGE_TYPE_TELEMETRY, leyline.TelemetryPacket)
        receipts = [e for p in packets for e in p.events
                    if e.description == "command_receipt" and e.attributes.get("command_id") == cmd.command_id]
        time.sleep(0.1)
    assert receipts, "no command_receipt for the bus command on oona.telemetry"
    assert receipts[0].attributes["accepted"] == "true"
    assert receipts[0].attributes["transport"] == "COMMAND_TRANSPORT_OONA"
    # The entry was acknowledged once its command had its receipt.
    assert r.xpending("oona.normal", "kasmina")["pending"] == 0


def test_an_emergency_from_the_bus_reaches_oona_emergency_as_critical(pb, oona):
    leyline = pb[0]
    redis_server, _server = oona
    r = redis_server.client
    cmd = new_command(pb, leyline.COMMAND_EMERGENCY)
    r.xadd("oona.emergency", bus_fields(pb, leyline.BUS_MESSAGE_TYPE_ADAPTATION_COMMAND, cmd.SerializeToString()))
    deadline = time.monotonic() + 30
    critical = []
    while time.monotonic() < deadline and not critical:
        packets = read_bus(pb, r, "oona.emergency", leyline.BUS_MESSAGE_TYPE_TELEMETRY, leyline.TelemetryPacket)
        critical = [p for p in packets if p.level == leyline.TELEMETRY_LEVEL_CRITICAL
                    and any(e.description == "emergency_cleanup" for e in p.events)]
        time.sleep(0.1)
    assert critical, "no CRITICAL packet on oona.emergency"


def test_unsigned_and_forged_bus_entries_are_dead_lettered_without_effect(pb, oona):
    leyline = pb[0]
    redis_server, _server = oona
    r = redis_server.client
    unsigned = seed_command(pb, leyline.SEED_OP_GERMINATE, "bus-unsigned", "BP001", slot="input")
    forged = seed_command(pb, leyline.SEED_OP_GERMINATE, "bus-forged", "BP001", slot="input")
    r.xadd("oona.normal", bus_fields(pb, leyline.BUS_MESSAGE_TYPE_ADAPTATION_COMMAND, unsigned.SerializeToString(), signed=False))
    fields = bus_fields(pb, leyline.BUS_MESSAGE_TYPE_ADAPTATION_COMMAND, forged.SerializeToString())
    fields["signature"] = base64.b64encode(b"\0" * 32)
    r.xadd("oona.normal", fields)
    deadline = time.monotonic() + 30
    reasons = []
    while time.monotonic() < deadline and len(reasons) < 2:
        reasons = [f[b"reason"].decode() for _, f in r.xrange("oona.deadletter")]
        time.sleep(0.1)
    assert reasons == ["missing_signature", "invalid_signature"], reasons
    assert r.xpending("oona.normal", "kasmina")["pending"] == 0
    states = read_bus(pb, r, "oona.normal", leyline.BUS_MESSAGE_TYPE_SYSTEM_STATE, leyline.SystemStatePacket)
    seen = {s.seed_id for p in states for s in p.seed_states}
    assert not ({"bus-unsigned", "bus-forged"} & seen), "a refused entry had an effect"


def test_the_demo_joins_the_bus_with_its_telemetry_and_a_state_per_epoch(pb, tmp_path):
    leyline = pb[0]
    redis_server = RedisServer(tmp_path)
    try:
        run = subprocess.run(
            [os.environ["KASMINA_BIN"], "demo", "--epochs", "4", "--quiet", "--out", str(tmp_path / "out"),
             "--oona", redis_server.url],
            env={**os.environ, "ESPER_LEYLINE_SECRET": SECRET}, capture_output=True, text=True, timeout=300,
        )
        assert run.returncode == 0, run.stderr
        r = redis_server.client
        states = read_bus(pb, r, "oona.normal", leyline.BUS_MESSAGE_TYPE_SYSTEM_STATE, leyline.SystemStatePacket)
        assert len(states) == 4, "one SystemStatePacket per epoch of the grown run"
        packets = read_bus(pb, r, "oona.telemetry", leyline.BUS_MESSAGE_TYPE_TELEMETRY, leyline.TelemetryPacket)
        lines = (tmp_path / "out" / "telemetry.jsonl").read_text().splitlines()
        assert len(packets) == len(lines) > 0, "every packet of the JSON-lines file is on the bus too"
    finally:
        redis_server.stop()
