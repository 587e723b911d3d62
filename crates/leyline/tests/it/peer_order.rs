//! `encode_peer` writes maps in the Python peer's (upb's) deterministic order, `Struct`s
//! included. Regression tests of a `decode_leyline` fuzz finding: a `rollback_payload` with two
//! fields gave different peer bytes from one decoding to the next (pbjson-types' `Struct` is a
//! `HashMap`), and string keys that are prefixes of one another were not in upb's order.
//! The expected bytes come from protobuf 6.33 (upb) `SerializeToString(deterministic=True)`.

use leyline::adaptation_command::Payload;
use leyline::wkt::{ListValue, Struct, Value, value::Kind};
use leyline::{AdaptationCommand, Message, SeedState, encode_peer};

fn value(kind: Kind) -> Value {
    Value { kind: Some(kind) }
}

fn rollback(fields: Vec<(&str, Value)>) -> AdaptationCommand {
    let fields = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    AdaptationCommand { payload: Some(Payload::RollbackPayload(Struct { fields })), ..Default::default() }
}

#[test]
fn a_key_comes_after_the_longer_keys_it_is_a_prefix_of() {
    let state = SeedState {
        metrics: [("alpha".to_owned(), 0.0), ("alpha_target".to_owned(), 1.0), ("beta".to_owned(), 2.0)].into(),
        ..Default::default()
    };
    let upb = "32130a0c616c7068615f746172676574150000803f320c0a05616c7068611500000000320b0a04626574611500000040";
    assert_eq!(hex::encode(encode_peer(&state)), upb);
}

#[test]
fn struct_fields_are_written_in_upb_order() {
    let cmd = rollback(vec![
        ("b", value(Kind::NumberValue(3.0))),
        ("", value(Kind::NumberValue(4.0))),
        ("ab", value(Kind::NumberValue(2.0))),
        ("a", value(Kind::NumberValue(1.0))),
    ]);
    let upb = "6a400a0f0a02616212091100000000000000400a0e0a0161120911000000000000f03f0a0e0a0162120911000000000000084\
               00a0d0a001209110000000000001040";
    assert_eq!(hex::encode(encode_peer(&cmd)), upb);
}

#[test]
fn nested_structs_are_sorted_and_their_default_keys_and_values_written() {
    let list = ListValue { values: vec![value(Kind::NumberValue(1.0)), value(Kind::NullValue(0))] };
    let inner = Struct {
        fields: [("y".to_owned(), value(Kind::BoolValue(true))), ("x".to_owned(), value(Kind::ListValue(list)))].into(),
    };
    let cmd = rollback(vec![("", Value { kind: None }), ("zz", value(Kind::StructValue(inner)))]);
    let upb = "6a310a290a027a7a12232a210a160a01781211320f0a0911000000000000f03f0a0208000a070a0179120220010a040a001200";
    assert_eq!(hex::encode(encode_peer(&cmd)), upb);
}

/// The fuzzer's input (its first byte selected `AdaptationCommand`): a `rollback_payload` with
/// the fields `""` and `"xee(((("`.
#[test]
fn fuzz_decode_leyline_struct_peer_bytes_are_deterministic() {
    let input = hex::decode(
        "066a6a28282828282828282828282828282829282828282828282828010a282828282828282828282828282828282829282828\
         282828282828010a07786565282828282828282828282828282828282829282828282828282828010a0778656574616d177028\
         25e9d7ad1818181800",
    )
    .unwrap();
    let first = AdaptationCommand::decode(&input[1..]).unwrap();
    let peer = encode_peer(&first);
    for _ in 0..32 {
        // Each decoding builds a new HashMap, with its own iteration order.
        let again = AdaptationCommand::decode(&input[1..]).unwrap();
        assert_eq!(encode_peer(&again), peer, "the same message, other peer bytes");
        let from_peer = AdaptationCommand::decode(peer.as_slice()).unwrap();
        assert_eq!(from_peer, first);
        assert_eq!(encode_peer(&from_peer), peer, "encode_peer is not a fixed point");
    }
}
