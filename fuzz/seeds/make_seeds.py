#!/usr/bin/env python3
"""Writes the committed seed inputs of the fuzz targets from Esper's peer vectors.

Usage: python3 fuzz/seeds/make_seeds.py [VECTORS_DIR]   (default /work/shared/vectors)

`cargo xtask fuzz` copies fuzz/seeds/<target>/ into fuzz/corpus/<target>/ (git-ignored)
before each run. The seeds are the peer's real bytes, so the fuzzers start from inputs that
reach the deep checks (signature, decoding, freshness) instead of finding them by chance.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/vectors"

# decode_leyline: the first byte selects the message, in the order of MESSAGES in
# fuzz_targets/decode_leyline.rs (the generated file's order).
SELECTOR = {"SeedState": 1, "SystemStatePacket": 2, "AdaptationCommand": 6, "BlueprintDescriptor": 10,
            "TelemetryPacket": 17, "SignedCommand": 23}


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, payload):
    """A length-delimited field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def signed_command(command, signature="", key_id=""):
    """An encoded SignedCommand (command = 1, signature = 2, key_id = 3; empty fields left out)."""
    out = field(1, command) if command else b""
    out += field(2, signature.encode()) if signature else b""
    out += field(3, key_id.encode()) if key_id else b""
    return out


def write(target, name, data):
    os.makedirs(os.path.join(HERE, target), exist_ok=True)
    with open(os.path.join(HERE, target, name), "wb") as f:
        f.write(data)


def main():
    commands = json.load(open(os.path.join(VECTORS, "signed_commands.json")))["commands"]
    for c in commands:
        raw = bytes.fromhex(c["command_hex"])
        if c["form"] == "envelope":
            envelope = signed_command(raw, c["signature"], c["key_id"])
            if c["name"] in ("germinate_envelope", "breaker_force_open_envelope", "stale_envelope",
                             "tampered_payload_envelope", "missing_timestamp_envelope"):
                write("verify_envelope", c["name"], envelope)
                write("grpc_submit", c["name"], envelope)
            if c["name"] in ("germinate_envelope", "optimizer_envelope", "edge_fresh_envelope"):
                # The raw command: the signed branches of the verifier targets sign it themselves.
                write("verify_envelope", c["name"] + ".command", raw)
                write("verify_legacy", c["name"] + ".command", raw)
                write("decode_leyline", c["name"] + ".command", bytes([SELECTOR["AdaptationCommand"]]) + raw)
                write("decode_leyline", c["name"] + ".signed", bytes([SELECTOR["SignedCommand"]]) + envelope)
        else:
            write("verify_legacy", c["name"], raw)
            # The legacy form inside an envelope with an empty signature.
            write("grpc_submit", c["name"], signed_command(raw))
    messages = json.load(open(os.path.join(VECTORS, "leyline_messages.json")))["messages"]
    for m in messages:
        if m["name"] in ("seed_state_seed_stage_training", "seed_state_seed_stage_resetting",
                         "system_state_10_seeds_5_metrics", "telemetry_packet_degraded", "blueprint_descriptor"):
            selector = SELECTOR[m["type"].rsplit(".", 1)[1]]
            write("decode_leyline", m["name"], bytes([selector]) + bytes.fromhex(m["hex"]))


# sequences: operations as fuzz_targets/sequences.rs reads them, one byte per choice (taken
# modulo the number of choices): op (0-3 seed operation: seed, operation, blueprint; 4 pause:
# seed, resume; 5 breaker: state; 6 emergency; 7 rollback: seed; 8 forged: seed; 9 replay;
# 10-13 steps: n, for n % 8 + 1 steps; 14 epoch; 15 wait).
GERMINATE, FOSSILIZE, CULL = 0, 5, 7
STEPS8, EPOCH, WAIT, REPLAY, EMERGENCY = [10, 7], [14], [15], [9], [6]
SEQUENCES = {
    "lifecycle": [0, 0, GERMINATE, 0] + (STEPS8 * 6 + EPOCH) * 4 + [0, 0, FOSSILIZE, 0] + STEPS8 * 2,
    "cull_wait_rollback": [0, 1, GERMINATE, 0] + STEPS8 * 3 + [0, 1, CULL, 0] + STEPS8 * 3 + WAIT + STEPS8
    + [7, 1] + [10, 3],
    "pause_replay_emergency": [0, 2, GERMINATE, 4, 10, 3, 4, 2, 0, 10, 3, 4, 2, 1] + REPLAY + [8, 2, 5, 3]
    + EMERGENCY + [10, 2] + WAIT + WAIT + REPLAY,
    "broken_noisy_missing": [0, 0, GERMINATE, 1] + STEPS8 * 4 + [0, 1, GERMINATE, 2] + STEPS8 * 4 + EPOCH
    + [0, 2, GERMINATE, 3, 10, 1],
}


def sequences():
    for name, ops in SEQUENCES.items():
        write("sequences", name, bytes(ops))


if __name__ == "__main__":
    sequences()
    main()
