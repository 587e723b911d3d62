//! Generates, for every message of the contract, its borrowed view (`leyline::view`) and its
//! one-pass encoder (`leyline::fast::FastEncode`), from the descriptor set (decisions D23).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto};

/// A float's default test: prost skips `-0.0` too, the peer (upb) only `+0.0` (bitwise).
const FLOAT_DEFAULT: &str = "(if peer { {v}.to_bits() == 0 } else { {v} == 0.0 })";

/// How one protobuf value is read, written and converted.
struct ValueKind {
    /// `leyline::view::kinds` type.
    kind: String,
    /// The view's value type.
    view: String,
    /// Wire type of one value.
    wire: u32,
    /// Writes value `{v}` (an owned value for scalars, a reference otherwise) under key `{k}`.
    encode: String,
    /// Writes one element `{v}` of a packed run (scalars only).
    packed_item: Option<String>,
    /// Whether `{v}` (as for `encode`) is the default value (skipped by prost).
    is_default: String,
    /// Converts a view value `{v}` to the owned value.
    to_owned: String,
    /// Scalars are `Copy` in the owned message too.
    copy: bool,
}

fn scalar(kind: &str, view: &str, wire: u32, encode: &str, item: &str, is_default: &str) -> ValueKind {
    ValueKind {
        kind: format!("kinds::{kind}"),
        view: view.into(),
        wire,
        encode: encode.into(),
        packed_item: Some(item.into()),
        is_default: is_default.into(),
        to_owned: "{v}".into(),
        copy: true,
    }
}

/// The kind of a numeric (or bool, or enum) field; `None` for the others.
fn numeric_kind(t: Type) -> Option<ValueKind> {
    let int = "{v} == 0";
    Some(match t {
        Type::Double => scalar(
            "Double",
            "f64",
            1,
            "w.fixed64({k}, {v}.to_le_bytes())",
            "w.put_slice(&{v}.to_le_bytes())",
            FLOAT_DEFAULT,
        ),
        Type::Float => scalar(
            "Float",
            "f32",
            5,
            "w.fixed32({k}, {v}.to_le_bytes())",
            "w.put_slice(&{v}.to_le_bytes())",
            FLOAT_DEFAULT,
        ),
        Type::Int32 | Type::Enum => {
            scalar("Int32", "i32", 0, "w.varint({k}, {v} as i64 as u64)", "w.put_varint({v} as i64 as u64)", int)
        }
        Type::Int64 => scalar("Int64", "i64", 0, "w.varint({k}, {v} as u64)", "w.put_varint({v} as u64)", int),
        Type::Uint32 => {
            scalar("Uint32", "u32", 0, "w.varint({k}, u64::from({v}))", "w.put_varint(u64::from({v}))", int)
        }
        Type::Uint64 => scalar("Uint64", "u64", 0, "w.varint({k}, {v})", "w.put_varint({v})", int),
        Type::Sint32 => scalar(
            "Sint32",
            "i32",
            0,
            "w.sint({k}, i64::from({v}))",
            "w.put_varint(((i64::from({v}) << 1) ^ (i64::from({v}) >> 63)) as u64)",
            int,
        ),
        Type::Sint64 => {
            scalar("Sint64", "i64", 0, "w.sint({k}, {v})", "w.put_varint((({v} << 1) ^ ({v} >> 63)) as u64)", int)
        }
        Type::Fixed32 => {
            scalar("Fixed32", "u32", 5, "w.fixed32({k}, {v}.to_le_bytes())", "w.put_slice(&{v}.to_le_bytes())", int)
        }
        Type::Fixed64 => {
            scalar("Fixed64", "u64", 1, "w.fixed64({k}, {v}.to_le_bytes())", "w.put_slice(&{v}.to_le_bytes())", int)
        }
        Type::Sfixed32 => {
            scalar("Sfixed32", "i32", 5, "w.fixed32({k}, {v}.to_le_bytes())", "w.put_slice(&{v}.to_le_bytes())", int)
        }
        Type::Sfixed64 => {
            scalar("Sfixed64", "i64", 1, "w.fixed64({k}, {v}.to_le_bytes())", "w.put_slice(&{v}.to_le_bytes())", int)
        }
        Type::Bool => {
            scalar("Bool", "bool", 0, "w.varint({k}, u64::from({v}))", "w.put_varint(u64::from({v}))", "!{v}")
        }
        _ => return None,
    })
}

fn value_kind(f: &FieldDescriptorProto, messages: &BTreeMap<String, &DescriptorProto>) -> Result<ValueKind> {
    if let Some(k) = numeric_kind(f.r#type()) {
        return Ok(k);
    }
    Ok(match f.r#type() {
        Type::String => ValueKind {
            kind: "kinds::Str".into(),
            view: "&'a str".into(),
            wire: 2,
            encode: "w.bytes({k}, {v}.as_bytes())".into(),
            packed_item: None,
            is_default: "{v}.is_empty()".into(),
            to_owned: "{v}.to_owned()".into(),
            copy: false,
        },
        Type::Bytes => ValueKind {
            kind: "kinds::Bytes".into(),
            view: "&'a [u8]".into(),
            wire: 2,
            encode: "w.bytes({k}, {v}.as_slice())".into(),
            packed_item: None,
            is_default: "{v}.is_empty()".into(),
            to_owned: "{v}.to_vec()".into(),
            copy: false,
        },
        Type::Message => {
            let name = f.type_name().trim_start_matches('.');
            let (view, encode) = match name {
                "google.protobuf.Timestamp" => ("TimestampView".to_owned(), "w.message({k}, {v}, peer)".to_owned()),
                "google.protobuf.Duration" => ("DurationView".to_owned(), "w.message({k}, {v}, peer)".to_owned()),
                "google.protobuf.Struct" => (
                    "StructView<'a>".to_owned(),
                    "w.foreign_message({k}, {v}, \"google.protobuf.Struct\", peer)".to_owned(),
                ),
                _ => {
                    let short = name.rsplit('.').next().unwrap_or(name);
                    if !messages.contains_key(name) {
                        bail!("field {}: message type {name} is not generated", f.name());
                    }
                    (format!("{short}View<'a>"), "w.message({k}, {v}, peer)".to_owned())
                }
            };
            ValueKind {
                kind: format!("kinds::Msg<{view}>"),
                view,
                wire: 2,
                encode,
                packed_item: None,
                is_default: "*{v} == Default::default()".into(),
                to_owned: "{v}.to_message()".into(),
                copy: false,
            }
        }
        _ => bail!("field {}: type {:?} is not supported", f.name(), f.r#type()),
    })
}

fn fill(template: &str, v: &str, k: u32) -> String {
    template.replace("{v}", v).replace("{k}", &format!("{k:#x}"))
}

fn key(number: i32, wire: u32) -> u32 {
    (number as u32) << 3 | wire
}

const KEYWORDS: &[&str] = &["type", "ref", "self", "match", "mod", "move", "use", "fn", "impl", "loop", "struct"];

fn rust_name(name: &str) -> String {
    if KEYWORDS.contains(&name) { format!("r#{name}") } else { name.to_owned() }
}

fn camel(name: &str) -> String {
    name.split('_').filter(|p| !p.is_empty()).map(|p| p[..1].to_uppercase() + &p[1..]).collect()
}

fn snake(name: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let prev_lower = i > 0 && chars[i - 1].is_lowercase();
            if i > 0 && (prev_lower || next_lower) {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(*c);
        }
    }
    out
}

/// One field of a view (or one oneof, for the encoder).
enum Shape<'d> {
    Single(&'d FieldDescriptorProto, ValueKind),
    Optional(&'d FieldDescriptorProto, ValueKind),
    Message(&'d FieldDescriptorProto, ValueKind),
    Repeated(&'d FieldDescriptorProto, ValueKind),
    Map(&'d FieldDescriptorProto, ValueKind, ValueKind),
    Oneof(String, Vec<(&'d FieldDescriptorProto, ValueKind)>),
}

impl Shape<'_> {
    fn first_number(&self) -> i32 {
        match self {
            Shape::Single(f, _) | Shape::Optional(f, _) | Shape::Message(f, _) | Shape::Repeated(f, _) => f.number(),
            Shape::Map(f, _, _) => f.number(),
            Shape::Oneof(_, members) => members.iter().map(|(f, _)| f.number()).min().unwrap_or(0),
        }
    }
}

fn shapes<'d>(msg: &'d DescriptorProto, messages: &BTreeMap<String, &'d DescriptorProto>) -> Result<Vec<Shape<'d>>> {
    let mut out = Vec::new();
    let mut oneofs: BTreeMap<i32, Vec<(&FieldDescriptorProto, ValueKind)>> = BTreeMap::new();
    for f in &msg.field {
        let synthetic = f.proto3_optional();
        if let (Some(i), false) = (f.oneof_index, synthetic) {
            oneofs.entry(i).or_default().push((f, value_kind(f, messages)?));
            continue;
        }
        if f.label() == Label::Repeated {
            let entry = (f.r#type() == Type::Message)
                .then(|| messages.get(f.type_name().trim_start_matches('.')))
                .flatten()
                .filter(|m| m.options.as_ref().is_some_and(|o| o.map_entry()));
            if let Some(entry) = entry {
                let k = entry.field.iter().find(|x| x.number() == 1).context("map entry without key")?;
                let v = entry.field.iter().find(|x| x.number() == 2).context("map entry without value")?;
                out.push(Shape::Map(f, value_kind(k, messages)?, value_kind(v, messages)?));
            } else {
                out.push(Shape::Repeated(f, value_kind(f, messages)?));
            }
        } else if f.r#type() == Type::Message {
            out.push(Shape::Message(f, value_kind(f, messages)?));
        } else if synthetic {
            out.push(Shape::Optional(f, value_kind(f, messages)?));
        } else {
            out.push(Shape::Single(f, value_kind(f, messages)?));
        }
    }
    for (i, members) in oneofs {
        let name = msg.oneof_decl.get(i as usize).context("oneof index out of range")?.name().to_owned();
        out.push(Shape::Oneof(name, members));
    }
    out.sort_by_key(Shape::first_number);
    Ok(out)
}

/// The generated source (views and encoders) for every message of `package`.
pub(crate) fn generate(set: &prost_types::FileDescriptorSet, package: &str) -> Result<String> {
    let mut messages = BTreeMap::new();
    for file in &set.file {
        for m in &file.message_type {
            if !m.nested_type.iter().all(|n| n.options.as_ref().is_some_and(|o| o.map_entry())) {
                bail!("{}: nested message types are not supported by the view generator", m.name());
            }
            for n in &m.nested_type {
                messages.insert(format!("{}.{}.{}", file.package(), m.name(), n.name()), n);
            }
            messages.insert(format!("{}.{}", file.package(), m.name()), m);
        }
    }
    let mut out = String::new();
    for (name, msg) in &messages {
        let Some(short) = name.strip_prefix(package).and_then(|s| s.strip_prefix('.')) else { continue };
        if short.contains('.') {
            continue; // map entries
        }
        let shapes = shapes(msg, &messages).with_context(|| format!("message {name}"))?;
        view(&mut out, short, &shapes)?;
        encoder(&mut out, short, &shapes)?;
    }
    Ok(out)
}

/// The pieces of one view's source, filled field by field.
#[derive(Default)]
struct ViewParts {
    fields: String,
    parse: String,
    finish: String,
    owned: String,
    accessors: String,
}

fn view_fields(p: &mut ViewParts, shape: &Shape<'_>) -> Result<()> {
    match shape {
        Shape::Single(f, k) | Shape::Optional(f, k) => {
            let n = rust_name(f.name());
            let optional = matches!(shape, Shape::Optional(..));
            let ty = if optional { format!("Option<{}>", k.view) } else { k.view.clone() };
            writeln!(p.fields, "    pub {n}: {ty},")?;
            let read = format!("read::<{}>({}, wire, &mut r)?", k.kind, f.number());
            let read = if optional { format!("Some({read})") } else { read };
            writeln!(p.parse, "                {} => v.{n} = {read},", f.number())?;
            let conv = fill(&k.to_owned, "x", 0);
            if optional {
                writeln!(p.owned, "            {n}: self.{n}.map(|x| {conv}),")?;
            } else {
                writeln!(p.owned, "            {n}: {},", fill(&k.to_owned, &format!("self.{n}"), 0))?;
            }
            if f.r#type() == Type::Enum && !optional {
                let ty = f.type_name().rsplit('.').next().unwrap_or_default();
                writeln!(
                    p.accessors,
                    "    /// `{n}` as [`{ty}`] (its default when the value is unknown).\n    pub fn {}(&self) -> {ty} {{ {ty}::try_from(self.{n}).unwrap_or_default() }}",
                    f.name()
                )?;
            }
        }
        Shape::Message(f, k) => {
            let n = rust_name(f.name());
            writeln!(p.fields, "    pub {n}: Option<{}>,", k.view)?;
            writeln!(
                p.parse,
                "                {} => singular(&mut v.{n}, {}, wire, &mut r)?,",
                f.number(),
                f.number()
            )?;
            writeln!(p.owned, "            {n}: self.{n}.map(|x| x.to_message()),")?;
        }
        Shape::Repeated(f, k) => {
            let n = rust_name(f.name());
            writeln!(p.fields, "    pub {n}: Repeated<'a, {}>,", k.kind)?;
            writeln!(p.parse, "                {} => v.{n}.check({}, wire, &mut r)?,", f.number(), f.number())?;
            writeln!(p.finish, "        v.{n}.finish(bytes, {});", f.number())?;
            writeln!(p.owned, "            {n}: self.{n}.iter().map(|x| {}).collect(),", fill(&k.to_owned, "x", 0))?;
        }
        Shape::Map(f, kk, vk) => {
            let n = rust_name(f.name());
            writeln!(p.fields, "    pub {n}: MapView<'a, {}, {}>,", kk.kind, vk.kind)?;
            writeln!(p.parse, "                {} => v.{n}.check({}, wire, &mut r)?,", f.number(), f.number())?;
            writeln!(p.finish, "        v.{n}.finish(bytes, {});", f.number())?;
            writeln!(
                p.owned,
                "            {n}: self.{n}.iter().map(|(k, x)| ({}, {})).collect(),",
                fill(&kk.to_owned, "k", 0),
                fill(&vk.to_owned, "x", 0)
            )?;
        }
        Shape::Oneof(..) => {}
    }
    Ok(())
}

fn view_oneof(
    p: &mut ViewParts,
    name: &str,
    oneof: &str,
    members: &[(&FieldDescriptorProto, ValueKind)],
) -> Result<()> {
    let all: Vec<String> = members.iter().map(|(f, _)| rust_name(f.name())).collect();
    let module = snake(name);
    let mut conv = String::new();
    for (f, k) in members {
        let n = rust_name(f.name());
        writeln!(p.fields, "    /// Member of oneof `{oneof}`.\n    pub {n}: Option<{}>,", k.view)?;
        let clear: String = all.iter().filter(|o| **o != n).map(|o| format!(" v.{o} = None;")).collect();
        let read = if k.copy {
            format!("v.{n} = Some(read::<{}>({}, wire, &mut r)?);", k.kind, f.number())
        } else {
            format!("singular(&mut v.{n}, {}, wire, &mut r)?;", f.number())
        };
        writeln!(p.parse, "                {} => {{ {read}{clear} }}", f.number())?;
        write!(
            conv,
            "self.{n}.map(|x| {module}::{}::{}({})).or_else(|| ",
            camel(oneof),
            camel(f.name()),
            fill(&k.to_owned, "x", 0)
        )?;
    }
    let closing = ")".repeat(members.len());
    writeln!(p.owned, "            {}: {conv}None{closing},", rust_name(oneof))?;
    Ok(())
}

fn view(out: &mut String, name: &str, shapes: &[Shape<'_>]) -> Result<()> {
    let mut p = ViewParts::default();
    for shape in shapes {
        match shape {
            Shape::Oneof(oneof, members) => view_oneof(&mut p, name, oneof, members)?,
            other => view_fields(&mut p, other)?,
        }
    }
    let ViewParts { fields, parse, finish, owned, accessors } = p;
    let accessor_block =
        if accessors.is_empty() { String::new() } else { format!("\nimpl {name}View<'_> {{\n{accessors}}}\n") };
    let parse_loop = if parse.is_empty() {
        "        while let Some((_, wire)) = r.key()? {\n            r.skip(wire)?;\n        }\n".to_owned()
    } else {
        format!(
            "        while let Some((number, wire)) = r.key()? {{\n            match number {{\n{parse}                _ => r.skip(wire)?,\n            }}\n        }}\n"
        )
    };
    write!(
        out,
        r#"/// Borrowed view of [`{name}`] (see [`crate::view`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct {name}View<'a> {{
{fields}    _bytes: std::marker::PhantomData<&'a [u8]>,
}}

impl<'a> View<'a> for {name}View<'a> {{
    type Owned = {name};

    fn parse(bytes: &'a [u8]) -> Result<Self, ViewError> {{
        let mut v = Self::default();
        let mut r = Reader::new(bytes);
{parse_loop}{finish}        Ok(v)
    }}

    fn to_message(&self) -> {name} {{
        {name} {{
{owned}        }}
    }}
}}

impl Viewable for {name} {{
    type View<'a> = {name}View<'a>;
}}
{accessor_block}
"#
    )?;
    Ok(())
}

fn encoder(out: &mut String, name: &str, shapes: &[Shape<'_>]) -> Result<()> {
    let mut body = String::new();
    for shape in shapes.iter().rev() {
        match shape {
            Shape::Single(f, k) => {
                let n = format!("self.{}", rust_name(f.name()));
                let v = if k.copy { n.clone() } else { format!("(&{n})") };
                let cond = fill(&k.is_default, &v, 0);
                writeln!(body, "        if !({cond}) {{ {}; }}", fill(&k.encode, &v, key(f.number(), k.wire)))?;
            }
            Shape::Optional(f, k) | Shape::Message(f, k) => {
                let n = rust_name(f.name());
                let src = if k.copy { format!("self.{n}") } else { format!("&self.{n}") };
                writeln!(
                    body,
                    "        if let Some(x) = {src} {{ {}; }}",
                    fill(&k.encode, "x", key(f.number(), k.wire))
                )?;
            }
            Shape::Repeated(f, k) => {
                let n = rust_name(f.name());
                match &k.packed_item {
                    Some(item) => writeln!(
                        body,
                        "        fast::packed(w, {:#x}, &self.{n}, |w, x| {});",
                        key(f.number(), 2),
                        fill(item, "x", 0)
                    )?,
                    None => writeln!(
                        body,
                        "        for x in self.{n}.iter().rev() {{ {}; }}",
                        fill(&k.encode, "x", key(f.number(), k.wire))
                    )?,
                }
            }
            Shape::Map(f, kk, vk) => {
                let n = rust_name(f.name());
                let (kv, vv) = (if kk.copy { "(*k)" } else { "k" }, if vk.copy { "(*x)" } else { "x" });
                writeln!(
                    body,
                    "        fast::map(w, {:#x}, &self.{n}, peer, |w, k, x| {{\n            if peer || !({}) {{ {}; }}\n            if peer || !({}) {{ {}; }}\n        }});",
                    key(f.number(), 2),
                    fill(&vk.is_default, vv, 0),
                    fill(&vk.encode, vv, key(2, vk.wire)),
                    fill(&kk.is_default, kv, 0),
                    fill(&kk.encode, kv, key(1, kk.wire)),
                )?;
            }
            Shape::Oneof(oneof, members) => {
                let module = snake(name);
                let mut arms = String::new();
                for (f, k) in members {
                    let v = if k.copy { "(*x)" } else { "x" };
                    writeln!(
                        arms,
                        "            Some({module}::{}::{}(x)) => {{ {}; }}",
                        camel(oneof),
                        camel(f.name()),
                        fill(&k.encode, v, key(f.number(), k.wire))
                    )?;
                }
                writeln!(
                    body,
                    "        match &self.{} {{\n{arms}            None => {{}}\n        }}",
                    rust_name(oneof)
                )?;
            }
        }
    }
    write!(
        out,
        "impl FastEncode for {name} {{\n    #[inline]\n    fn encode_rev(&self, w: &mut RevWriter, peer: bool) {{\n{body}    }}\n}}\n\n"
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(snake("AdaptationCommand"), "adaptation_command");
        assert_eq!(snake("GPUState"), "gpu_state");
        assert_eq!(camel("seed_operation"), "SeedOperation");
        assert_eq!(rust_name("type"), "r#type");
    }
}
