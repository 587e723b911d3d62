"""The peer's side of `cargo xtask bench --peer`: Esper's Python Leyline codec (protobuf's upb).

Times, on the very fixture bytes the Rust benches decode, per fixture:
  encode      SerializeToString() of the parsed message
  parse       ParseFromString() alone (upb parses lazily: Python objects are made on access)
  parse_read  ParseFromString() then reading every field, nested messages, lists and maps

usage: peer_codec.py STUBS_DIR FIXTURES_DIR [--seconds S] [--only FIXTURE/OP]
Prints one JSON object: {"fixture/op": median_ns, ...} plus "implementation" and "version";
with --only, just that one figure (what `cargo xtask bench --peer` interleaves with ours).
"""

import json
import pathlib
import sys
import time

MESSAGES = {
    "adaptation_command": "AdaptationCommand",
    "system_state_8x4": "SystemStatePacket",
    "telemetry_10m_5e": "TelemetryPacket",
}

_FIELDS = {}


def read_all(msg):
    """Reads every field of msg (recursively), the way a consumer that uses the whole message does."""
    desc = msg.DESCRIPTOR
    fields = _FIELDS.get(desc)
    if fields is None:
        fields = [
            (f.name, f.message_type is not None, f.is_repeated,
             f.message_type is not None and f.message_type.GetOptions().map_entry)
            for f in desc.fields
        ]
        _FIELDS[desc] = fields
    n = 0
    for name, is_msg, repeated, is_map in fields:
        v = getattr(msg, name)
        if is_map:
            for k, x in v.items():
                n += 1
                if hasattr(x, "DESCRIPTOR"):
                    n += read_all(x)
        elif repeated:
            for x in v:
                n += read_all(x) if is_msg else 1
        elif is_msg:
            n += read_all(v)
        else:
            n += 1
    return n


def median_ns(fn, seconds):
    """Median per-call time over batches of calls spanning about `seconds`."""
    batch = 1
    while True:
        t = time.perf_counter_ns()
        for _ in range(batch):
            fn()
        if time.perf_counter_ns() - t > 2_000_000:
            break
        batch *= 2
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter_ns()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter_ns() - t) / batch)
    samples.sort()
    return samples[len(samples) // 2]


def main():
    stubs, fixtures = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    seconds = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 2.0
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    sys.path.insert(0, str(stubs))
    from esper.leyline.v1 import leyline_pb2  # noqa: E402  (generated into STUBS_DIR)
    from google.protobuf import __version__
    from google.protobuf.internal import api_implementation

    out = {"implementation": api_implementation.Type(), "version": __version__}
    for fixture, name in MESSAGES.items():
        data = (fixtures / f"{fixture}.bin").read_bytes()
        cls = getattr(leyline_pb2, name)
        msg = cls()
        msg.ParseFromString(data)
        assert msg.SerializeToString(deterministic=True) == data, f"{fixture}: the peer re-encodes other bytes"
        assert read_all(msg) > 0

        def parse(cls=cls, data=data):
            m = cls()
            m.ParseFromString(data)
            return m

        def parse_read(cls=cls, data=data):
            m = cls()
            m.ParseFromString(data)
            return read_all(m)

        for op, fn in (("encode", msg.SerializeToString), ("parse", parse), ("parse_read", parse_read)):
            key = f"{fixture}/{op}"
            if only is None or only == key:
                out[key] = median_ns(fn, seconds)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
