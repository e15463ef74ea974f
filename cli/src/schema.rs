//! Payload schemas: JSON to FlatBuffers and back, through a schema's reflection
//! data.
//!
//! A schema is a binary schema (`.bfbs`, what `flatc --binary --schema` writes),
//! read in process with the `flatbuffers-reflection` crate, or a text schema
//! (`.fbs`, e.g. what a `framework::main!` server's `--export-schema` writes), which
//! `flatc` compiles to a binary schema once, when the schema is loaded. Encoding and
//! decoding then run in process, with no tool and no temporary file: `subscribe`
//! decodes every delivery without starting a process.
//!
//! The JSON is `flatc`'s: a table is an object of its fields, a struct an object of
//! its fields (all of them), an enum value its name (or its number), a union two
//! members, `NAME_type` (the member's name) and `NAME` (the member's table), a
//! vector an array, NaN and the infinities the strings `"nan"`, `"inf"` and
//! `"-inf"`. Decoding prints the fields in schema order and every scalar, its
//! default included, as `flatc --json --defaults-json` does: an absent optional
//! scalar is `null`, an absent union's type `"NONE"`; strings, tables, vectors and
//! unions that are absent are left out. Encoding also takes a
//! UUID string for a `Uuid` struct (`struct Uuid { bytes: [ubyte:16]; }`), reads
//! `null` as an absent field, and refuses unknown fields, deprecated fields and
//! missing required ones, naming where in the JSON.
//!
//! ```no_run
//! use framework_cli::schema::Schema;
//! let schema = Schema::load("app.fbs".as_ref(), None).expect("a schema");
//! let bytes = schema.encode("Hello", &serde_json::json!({ "name": "Ada" })).unwrap();
//! let json = schema.decode("Hello", &bytes).unwrap();
//! assert_eq!(json.to_string(), r#"{"name":"Ada"}"#);
//! ```

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;

use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, WIPOffset};
use flatbuffers_reflection::reflection::{self, BaseType, Enum, Field, Object, Type};
use serde_json::Value;

use crate::json::Json;

/// A schema that cannot be loaded, or a type it does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SchemaError(pub String);

/// A payload that does not match its table: where (a JSON path such as
/// `.home.geo[1].lat`, empty for the whole value) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("at {path}: ") })]
pub struct CodecError {
    /// Where in the value.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn fail<T>(path: &str, message: impl Into<String>) -> Result<T, CodecError> {
    Err(CodecError {
        path: path.to_string(),
        message: message.into(),
    })
}

/// How deep tables may nest in a decoded payload.
const MAX_DEPTH: usize = 64;
/// How many tables, structs, strings and vector elements one decoding may visit (a
/// buffer may point many times at the same table).
const MAX_NODES: usize = 1_000_000;

/// A loaded schema: its reflection data.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    schema: reflection::Schema<'static>,
}

impl Schema {
    /// Loads `path`: a binary schema as it is, a text schema compiled by `flatc`
    /// (`flatc`, when `None`, is the one on `PATH`). Whether a file is binary is
    /// told by its content (the `BFBS` identifier), not its name.
    pub fn load(path: &Path, flatc: Option<&Path>) -> Result<Schema, SchemaError> {
        let bytes = std::fs::read(path)
            .map_err(|e| SchemaError(format!("cannot read the schema {}: {e}", path.display())))?;
        if reflection::schema_buffer_has_identifier(&bytes) {
            return Schema::from_bfbs(bytes, path);
        }
        let bfbs = compile(path, flatc)?;
        Schema::from_bfbs(bfbs, path)
    }

    /// A schema from the bytes of a binary schema (`source` names it in errors).
    pub fn from_bfbs(bytes: Vec<u8>, source: &Path) -> Result<Schema, SchemaError> {
        // The schema lives as long as the program: a command loads one or none.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        let schema = reflection::root_as_schema(bytes).map_err(|e| {
            SchemaError(format!(
                "{} is not a binary FlatBuffers schema: {e}",
                source.display()
            ))
        })?;
        Ok(Schema { schema })
    }

    /// The schema's `root_type`, fully qualified.
    pub fn root_type(&self) -> Option<&'static str> {
        self.schema.root_table().map(|o| o.name())
    }

    /// The tables (not structs) the schema defines, fully qualified.
    pub fn tables(&self) -> Vec<&'static str> {
        self.schema
            .objects()
            .iter()
            .filter(|o| !o.is_struct())
            .map(|o| o.name())
            .collect()
    }

    /// The table called `name`, fully qualified (`app.Hello`) or by its own name
    /// when only one namespace has it; returns its fully qualified name.
    pub fn resolve(&self, name: &str) -> Result<&'static str, SchemaError> {
        let matches: Vec<Object<'static>> = self
            .schema
            .objects()
            .iter()
            .filter(|o| o.name() == name || o.name().rsplit('.').next() == Some(name))
            .collect();
        let exact = matches.iter().find(|o| o.name() == name);
        let object = match (exact, matches.as_slice()) {
            (Some(o), _) | (None, [o]) => *o,
            (None, []) => {
                let tables = self.tables();
                return Err(SchemaError(if tables.is_empty() {
                    format!("no table `{name}`: the schema defines no table")
                } else {
                    format!(
                        "no table `{name}` in the schema (tables: {})",
                        tables.join(", ")
                    )
                }));
            }
            (None, several) => {
                let names: Vec<&str> = several.iter().map(|o| o.name()).collect();
                return Err(SchemaError(format!(
                    "`{name}` is ambiguous: {}; give the full name",
                    names.join(", ")
                )));
            }
        };
        if object.is_struct() {
            return Err(SchemaError(format!(
                "`{}` is a struct: a payload is a table",
                object.name()
            )));
        }
        Ok(object.name())
    }

    /// The request and response tables the schema declares for application
    /// opcode `opcode`: an `rpc_service` method with the attribute `opcode`, e.g.
    ///
    /// ```text
    /// attribute "opcode";
    /// rpc_service App { Greet(Hello): Greeting (opcode: "201"); }
    /// ```
    pub fn opcode_types(&self, opcode: u16) -> Option<(&'static str, &'static str)> {
        let wanted = opcode.to_string();
        for service in self.schema.services()?.iter() {
            for call in service.calls().into_iter().flatten() {
                let tagged = call.attributes().into_iter().flatten().any(|kv| {
                    kv.key() == "opcode" && kv.value().map(str::trim) == Some(wanted.as_str())
                });
                if tagged {
                    return Some((call.request().name(), call.response().name()));
                }
            }
        }
        None
    }

    fn object(&self, index: i32) -> Result<Object<'static>, String> {
        let objects = self.schema.objects();
        usize::try_from(index)
            .ok()
            .filter(|i| *i < objects.len())
            .map(|i| objects.get(i))
            .ok_or_else(|| format!("the schema has no object #{index}"))
    }

    fn enumeration(&self, index: i32) -> Option<Enum<'static>> {
        let enums = self.schema.enums();
        usize::try_from(index)
            .ok()
            .filter(|i| *i < enums.len())
            .map(|i| enums.get(i))
    }

    fn table_object(&self, name: &str) -> Result<Object<'static>, CodecError> {
        let full = self.resolve(name).map_err(|e| CodecError {
            path: String::new(),
            message: e.0,
        })?;
        match self.schema.objects().iter().find(|o| o.name() == full) {
            Some(o) => Ok(o),
            None => fail("", format!("no table `{name}`")),
        }
    }

    /// Encodes `json` as a FlatBuffers buffer whose root is the table `table` (no
    /// file identifier, as protocol payloads are).
    pub fn encode(&self, table: &str, json: &Value) -> Result<Vec<u8>, CodecError> {
        let object = self.table_object(table)?;
        let mut fbb = FlatBufferBuilder::new();
        let root = self.encode_table(&mut fbb, object, json, "")?;
        fbb.finish_minimal(root);
        Ok(fbb.finished_data().to_vec())
    }

    /// Decodes `bytes`, a buffer whose root is the table `table`, to JSON. Any
    /// input is safe: what does not fit the schema is an error, never a panic.
    pub fn decode(&self, table: &str, bytes: &[u8]) -> Result<Json, CodecError> {
        let object = self.table_object(table)?;
        let reader = Reader {
            buf: bytes,
            nodes: Cell::new(0),
        };
        let root = reader.uoffset(0, "")?;
        self.decode_table(&reader, object, root, 0, "")
    }
}

/// Runs `flatc --binary --schema` on `path` in a fresh temporary directory and
/// returns the binary schema it wrote.
fn compile(path: &Path, flatc: Option<&Path>) -> Result<Vec<u8>, SchemaError> {
    let tool = flatc.unwrap_or(Path::new("flatc"));
    let dir = std::env::temp_dir().join(format!(
        "fw-schema-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| {
        SchemaError(format!(
            "cannot create a temporary directory {}: {e}",
            dir.display()
        ))
    })?;
    let include = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let output = Command::new(tool)
        .arg("--binary")
        .arg("--schema")
        .arg("-I")
        .arg(include)
        .arg("-o")
        .arg(&dir)
        .arg(path)
        .output();
    let result = match output {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SchemaError(match flatc {
            None => format!(
                "cannot compile the schema {}: `flatc` not found on PATH; install \
                 flatc, pass --flatc PATH, or give a binary schema (`flatc --binary \
                 --schema {}` writes one)",
                path.display(),
                path.display()
            ),
            Some(_) => format!(
                "cannot compile the schema {}: the flatc given, {}, does not exist",
                path.display(),
                tool.display()
            ),
        })),
        Err(e) => Err(SchemaError(format!(
            "cannot run `{}` to compile the schema {}: {e}",
            tool.display(),
            path.display()
        ))),
        Ok(out) if !out.status.success() => Err(SchemaError(format!(
            "`{}` could not compile the schema {}: {}",
            tool.display(),
            path.display(),
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .lines()
                .chain(String::from_utf8_lossy(&out.stdout).trim().lines())
                .collect::<Vec<_>>()
                .join("; ")
        ))),
        Ok(_) => read_bfbs(&dir, path),
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The one `.bfbs` file flatc wrote into `dir`.
fn read_bfbs(dir: &Path, source: &Path) -> Result<Vec<u8>, SchemaError> {
    let written: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "bfbs"))
                .collect()
        })
        .unwrap_or_default();
    match written.as_slice() {
        [file] => std::fs::read(file)
            .map_err(|e| SchemaError(format!("cannot read {}: {e}", file.display()))),
        _ => Err(SchemaError(format!(
            "flatc wrote no binary schema for {}",
            source.display()
        ))),
    }
}

// --- scalars ----------------------------------------------------------------------

/// A scalar value, before it takes its field's exact type.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scalar {
    Bool(bool),
    Int(i128),
    Float(f64),
}

fn scalar_size(base: BaseType) -> Option<usize> {
    Some(match base {
        BaseType::Bool | BaseType::Byte | BaseType::UByte | BaseType::UType => 1,
        BaseType::Short | BaseType::UShort => 2,
        BaseType::Int | BaseType::UInt | BaseType::Float => 4,
        BaseType::Long | BaseType::ULong | BaseType::Double => 8,
        _ => return None,
    })
}

/// The range of an integer type.
fn int_range(base: BaseType) -> Option<(i128, i128)> {
    Some(match base {
        BaseType::Byte => (i8::MIN.into(), i8::MAX.into()),
        BaseType::UByte | BaseType::UType => (0, u8::MAX.into()),
        BaseType::Short => (i16::MIN.into(), i16::MAX.into()),
        BaseType::UShort => (0, u16::MAX.into()),
        BaseType::Int => (i32::MIN.into(), i32::MAX.into()),
        BaseType::UInt => (0, u32::MAX.into()),
        BaseType::Long => (i64::MIN.into(), i64::MAX.into()),
        BaseType::ULong => (0, u64::MAX.into()),
        _ => return None,
    })
}

fn type_name(base: BaseType) -> &'static str {
    match base {
        BaseType::Bool => "bool",
        BaseType::Byte => "byte",
        BaseType::UByte => "ubyte",
        BaseType::UType => "union type",
        BaseType::Short => "short",
        BaseType::UShort => "ushort",
        BaseType::Int => "int",
        BaseType::UInt => "uint",
        BaseType::Long => "long",
        BaseType::ULong => "ulong",
        BaseType::Float => "float",
        BaseType::Double => "double",
        BaseType::String => "string",
        BaseType::Vector => "vector",
        BaseType::Obj => "table",
        BaseType::Union => "union",
        BaseType::Array => "array",
        _ => "unsupported type",
    }
}

/// Reads the little-endian scalar of type `base` from `bytes` (exactly its size).
fn scalar_from_le(base: BaseType, b: &[u8]) -> Option<Scalar> {
    fn arr<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
        b.try_into().ok()
    }
    Some(match base {
        BaseType::Bool => Scalar::Bool(*b.first()? != 0),
        BaseType::Byte => Scalar::Int(i8::from_le_bytes(arr(b)?).into()),
        BaseType::UByte | BaseType::UType => Scalar::Int(u8::from_le_bytes(arr(b)?).into()),
        BaseType::Short => Scalar::Int(i16::from_le_bytes(arr(b)?).into()),
        BaseType::UShort => Scalar::Int(u16::from_le_bytes(arr(b)?).into()),
        BaseType::Int => Scalar::Int(i32::from_le_bytes(arr(b)?).into()),
        BaseType::UInt => Scalar::Int(u32::from_le_bytes(arr(b)?).into()),
        BaseType::Long => Scalar::Int(i64::from_le_bytes(arr(b)?).into()),
        BaseType::ULong => Scalar::Int(u64::from_le_bytes(arr(b)?).into()),
        // The shortest decimal that reads back as the same f32 (0.1, not
        // 0.10000000149011612).
        BaseType::Float => {
            let f = f32::from_le_bytes(arr(b)?);
            Scalar::Float(f.to_string().parse().unwrap_or(f.into()))
        }
        BaseType::Double => Scalar::Float(f64::from_le_bytes(arr(b)?)),
        _ => return None,
    })
}

/// The little-endian bytes of `value` as type `base` (already range-checked).
fn scalar_to_le(base: BaseType, value: Scalar) -> Vec<u8> {
    let int = |v: Scalar| match v {
        Scalar::Int(i) => i,
        Scalar::Bool(b) => i128::from(b),
        Scalar::Float(f) => f as i128,
    };
    let float = |v: Scalar| match v {
        Scalar::Float(f) => f,
        Scalar::Int(i) => i as f64,
        Scalar::Bool(b) => f64::from(u8::from(b)),
    };
    match base {
        BaseType::Bool => vec![u8::from(int(value) != 0)],
        BaseType::Byte => (int(value) as i8).to_le_bytes().to_vec(),
        BaseType::UByte | BaseType::UType => (int(value) as u8).to_le_bytes().to_vec(),
        BaseType::Short => (int(value) as i16).to_le_bytes().to_vec(),
        BaseType::UShort => (int(value) as u16).to_le_bytes().to_vec(),
        BaseType::Int => (int(value) as i32).to_le_bytes().to_vec(),
        BaseType::UInt => (int(value) as u32).to_le_bytes().to_vec(),
        BaseType::Long => (int(value) as i64).to_le_bytes().to_vec(),
        BaseType::ULong => (int(value) as u64).to_le_bytes().to_vec(),
        BaseType::Float => (float(value) as f32).to_le_bytes().to_vec(),
        BaseType::Double => float(value).to_le_bytes().to_vec(),
        _ => Vec::new(),
    }
}

/// A field's default value.
fn default_scalar(field: &Field<'_>, base: BaseType) -> Scalar {
    match base {
        BaseType::Bool => Scalar::Bool(field.default_integer() != 0),
        BaseType::Float | BaseType::Double => Scalar::Float(field.default_real()),
        // Defaults above i64::MAX are stored bit for bit.
        BaseType::ULong => Scalar::Int((field.default_integer() as u64).into()),
        _ => Scalar::Int(field.default_integer().into()),
    }
}

/// Whether an enum is a set of bit flags (`(bit_flags)`).
fn is_bit_flags(e: &Enum<'_>) -> bool {
    e.attributes()
        .into_iter()
        .flatten()
        .any(|kv| kv.key() == "bit_flags")
}

impl Schema {
    /// A scalar as JSON: an enum value by its name when it has one.
    fn scalar_json(&self, value: Scalar, enum_index: i32) -> Json {
        match value {
            Scalar::Bool(b) => Json::Bool(b),
            Scalar::Float(f) => Json::float(f),
            Scalar::Int(i) => {
                if let Some(e) = self.enumeration(enum_index) {
                    if let Some(name) = enum_name(&e, i) {
                        return Json::String(name);
                    }
                }
                match (i64::try_from(i), u64::try_from(i)) {
                    (Ok(n), _) => Json::from(n),
                    (_, Ok(n)) => Json::from(n),
                    _ => Json::Null,
                }
            }
        }
    }

    /// A JSON value as a scalar of type `base` (an enum's when `enum_index` names
    /// one), checked against the type's range.
    fn parse_scalar(
        &self,
        value: &Value,
        base: BaseType,
        enum_index: i32,
        path: &str,
    ) -> Result<Scalar, CodecError> {
        let expected = || match self.enumeration(enum_index) {
            Some(e) => format!("a value of enum {}", e.name()),
            None => format!("a {}", type_name(base)),
        };
        let described = describe(value);
        match base {
            BaseType::Bool => match value {
                Value::Bool(b) => Ok(Scalar::Bool(*b)),
                Value::Number(n) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => {
                    Ok(Scalar::Bool(n.as_u64() == Some(1)))
                }
                Value::String(s) if s == "true" || s == "false" => Ok(Scalar::Bool(s == "true")),
                _ => fail(path, format!("expected a bool, got {described}")),
            },
            BaseType::Float | BaseType::Double => {
                let f = match value {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => parse_float(s),
                    _ => None,
                };
                match f {
                    Some(f) => Ok(Scalar::Float(f)),
                    None => fail(path, format!("expected a number, got {described}")),
                }
            }
            _ => {
                let Some((min, max)) = int_range(base) else {
                    return fail(path, format!("a {} is not a scalar", type_name(base)));
                };
                let int = match value {
                    Value::Number(n) => n
                        .as_i64()
                        .map(i128::from)
                        .or_else(|| n.as_u64().map(i128::from))
                        .or_else(|| {
                            n.as_f64()
                                .filter(|f| f.fract() == 0.0 && f.abs() < 1e30)
                                .map(|f| f as i128)
                        }),
                    Value::String(s) => match self.enumeration(enum_index) {
                        Some(e) => Some(self.parse_enum(&e, s, path)?),
                        None => s.trim().parse::<i128>().ok(),
                    },
                    _ => None,
                };
                match int {
                    Some(i) if (min..=max).contains(&i) => Ok(Scalar::Int(i)),
                    Some(i) => fail(
                        path,
                        format!(
                            "{i} is out of range for a {} ({min}..={max})",
                            type_name(base)
                        ),
                    ),
                    None => fail(path, format!("expected {}, got {described}", expected())),
                }
            }
        }
    }

    /// An enum value's name(s): one name, or several separated by spaces (their
    /// values or'ed, as flatc reads bit flags).
    fn parse_enum(&self, e: &Enum<'_>, text: &str, path: &str) -> Result<i128, CodecError> {
        let mut value = 0i128;
        let mut any = false;
        for word in text.split_whitespace() {
            let word = word.rsplit('.').next().unwrap_or(word);
            let found = e.values().iter().find(|v| v.name() == word);
            match found {
                Some(v) => value |= i128::from(v.value()),
                None => match word.parse::<i128>() {
                    Ok(n) => value |= n,
                    Err(_) => {
                        let names: Vec<&str> = e.values().iter().map(|v| v.name()).collect();
                        return fail(
                            path,
                            format!(
                                "`{word}` is not a value of enum {} (values: {})",
                                e.name(),
                                names.join(", ")
                            ),
                        );
                    }
                },
            }
            any = true;
        }
        if !any {
            return fail(
                path,
                format!("an empty string is not a value of enum {}", e.name()),
            );
        }
        Ok(value)
    }
}

/// The name of `value` in `e`: its value's name, or for bit flags the names of its
/// bits (`None`: a value the enum does not name).
fn enum_name(e: &Enum<'_>, value: i128) -> Option<String> {
    if let Some(v) = e.values().iter().find(|v| i128::from(v.value()) == value) {
        return Some(v.name().to_string());
    }
    if is_bit_flags(e) && value > 0 {
        let mut names = Vec::new();
        let mut covered = 0i128;
        for v in e.values().iter() {
            let bits = i128::from(v.value());
            if bits != 0 && bits & value == bits {
                names.push(v.name());
                covered |= bits;
            }
        }
        if covered == value {
            return Some(names.join(" "));
        }
    }
    None
}

fn parse_float(s: &str) -> Option<f64> {
    match s.trim().to_ascii_lowercase().as_str() {
        "nan" | "+nan" | "-nan" => Some(f64::NAN),
        "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.chars().count() > 40 => "a string".into(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn child(path: &str, name: &str) -> String {
    format!("{path}.{name}")
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// An object's fields in declaration order (the schema keeps them by name).
fn fields_by_id(object: &Object<'static>) -> Vec<Field<'static>> {
    let mut fields: Vec<Field<'static>> = object.fields().iter().collect();
    fields.sort_by_key(|f| f.id());
    fields
}

fn field_named(object: &Object<'static>, name: &str) -> Option<Field<'static>> {
    object.fields().iter().find(|f| f.name() == name)
}

// --- encoding ---------------------------------------------------------------------

type Offset = WIPOffset<UnionWIPOffset>;

/// Pushes `value` as the exact type `base` into `slot` of the table being built:
/// always, or (`default` given) only when it differs from the default.
fn push_scalar_slot(
    fbb: &mut FlatBufferBuilder<'_>,
    slot: u16,
    base: BaseType,
    value: Scalar,
    default: Option<Scalar>,
) {
    macro_rules! push {
        ($t:ty) => {{
            let v = <$t>::from_le_bytes(le(&scalar_to_le(base, value)));
            match default {
                Some(d) => fbb.push_slot(slot, v, <$t>::from_le_bytes(le(&scalar_to_le(base, d)))),
                None => fbb.push_slot_always(slot, v),
            }
        }};
    }
    match base {
        BaseType::Bool => {
            let truth = |s: Scalar| scalar_to_le(base, s).first().is_some_and(|b| *b != 0);
            let v = truth(value);
            match default {
                Some(d) => fbb.push_slot(slot, v, truth(d)),
                None => fbb.push_slot_always(slot, v),
            }
        }
        BaseType::Byte => push!(i8),
        BaseType::UByte | BaseType::UType => push!(u8),
        BaseType::Short => push!(i16),
        BaseType::UShort => push!(u16),
        BaseType::Int => push!(i32),
        BaseType::UInt => push!(u32),
        BaseType::Long => push!(i64),
        BaseType::ULong => push!(u64),
        BaseType::Float => push!(f32),
        BaseType::Double => push!(f64),
        _ => {}
    }
}

/// `bytes` as an array of exactly `N` (zero-padded; sizes always match here).
fn le<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = bytes.len().min(N);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

impl Schema {
    fn encode_table<'f>(
        &self,
        fbb: &mut FlatBufferBuilder<'f>,
        object: Object<'static>,
        value: &Value,
        path: &str,
    ) -> Result<Offset, CodecError> {
        let Value::Object(map) = value else {
            return fail(
                path,
                format!(
                    "expected an object (table {}), got {}",
                    object.name(),
                    describe(value)
                ),
            );
        };
        let fields = fields_by_id(&object);
        for key in map.keys() {
            match field_named(&object, key) {
                None => {
                    let names: Vec<&str> = fields
                        .iter()
                        .filter(|f| !f.deprecated())
                        .map(|f| f.name())
                        .collect();
                    return fail(
                        path,
                        format!(
                            "unknown field `{key}` in table {} (fields: {})",
                            object.name(),
                            names.join(", ")
                        ),
                    );
                }
                Some(f) if f.deprecated() && !map[key].is_null() => {
                    return fail(
                        &child(path, key),
                        format!("field `{key}` of table {} is deprecated", object.name()),
                    );
                }
                Some(_) => {}
            }
        }

        // Strings, vectors, tables and unions first: a table's children are
        // written before it.
        let mut offsets: Vec<(u16, Offset)> = Vec::new();
        for field in &fields {
            let name = field.name();
            let here = child(path, name);
            let ty = field.type_();
            let given = map.get(name).filter(|v| !v.is_null());
            let Some(v) = given else {
                if field.required() {
                    return fail(
                        path,
                        format!("missing required field `{name}` of table {}", object.name()),
                    );
                }
                if ty.base_type() == BaseType::Union {
                    if let Some(tag) = map.get(&format!("{name}_type")).filter(|t| !t.is_null()) {
                        let tag_path = child(path, &format!("{name}_type"));
                        let e = self.union_enum(&ty, &tag_path)?;
                        if self.parse_enum_value(&e, tag, &tag_path)? != 0 {
                            return fail(
                                path,
                                format!("`{name}_type` is set but `{name}` is missing"),
                            );
                        }
                    }
                }
                continue;
            };
            let offset = match ty.base_type() {
                BaseType::String => match v {
                    Value::String(s) => fbb.create_string(s).as_union_value(),
                    _ => return fail(&here, format!("expected a string, got {}", describe(v))),
                },
                BaseType::Vector => self.encode_vector(fbb, &ty, v, &here)?,
                BaseType::Obj => {
                    let o = self.object(ty.index()).or_else(|e| fail(&here, e))?;
                    if o.is_struct() {
                        continue;
                    }
                    self.encode_table(fbb, o, v, &here)?
                }
                BaseType::Union => self.encode_union(fbb, &object, field, map, v, path)?,
                _ => continue,
            };
            offsets.push((field.offset(), offset));
        }

        let start = fbb.start_table();
        for field in &fields {
            let name = field.name();
            let Some(v) = map.get(name).filter(|v| !v.is_null()) else {
                continue;
            };
            let here = child(path, name);
            let ty = field.type_();
            let base = ty.base_type();
            if scalar_size(base).is_some() {
                let value = if base == BaseType::UType {
                    let e = self.union_enum(&ty, &here)?;
                    Scalar::Int(self.parse_enum_value(&e, v, &here)?)
                } else {
                    self.parse_scalar(v, base, ty.index(), &here)?
                };
                let default = (!field.optional()).then(|| default_scalar(field, base));
                push_scalar_slot(fbb, field.offset(), base, value, default);
            } else if base == BaseType::Obj {
                let o = self.object(ty.index()).or_else(|e| fail(&here, e))?;
                if o.is_struct() {
                    let bytes = self.struct_bytes(&o, v, &here)?;
                    push_struct(fbb, &o, &bytes, Some(field.offset()), &here)?;
                }
            }
        }
        for (slot, offset) in offsets {
            fbb.push_slot_always(slot, offset);
        }
        Ok(fbb.end_table(start).as_union_value())
    }

    /// The enum of a union field (or of its `_type` field).
    fn union_enum(&self, ty: &Type<'_>, path: &str) -> Result<Enum<'static>, CodecError> {
        match self.enumeration(ty.index()) {
            Some(e) => Ok(e),
            None => fail(path, "the schema has no enum for this union"),
        }
    }

    /// A union member given by name (or number).
    fn parse_enum_value(&self, e: &Enum<'_>, v: &Value, path: &str) -> Result<i128, CodecError> {
        match v {
            Value::String(s) => self.parse_enum(e, s, path),
            Value::Number(n) => match n.as_u64().filter(|n| *n <= 255) {
                Some(n) => Ok(n.into()),
                None => fail(path, format!("{n} is not a member of union {}", e.name())),
            },
            other => fail(
                path,
                format!(
                    "expected a member of union {}, got {}",
                    e.name(),
                    describe(other)
                ),
            ),
        }
    }

    fn encode_union<'f>(
        &self,
        fbb: &mut FlatBufferBuilder<'f>,
        object: &Object<'static>,
        field: &Field<'static>,
        map: &serde_json::Map<String, Value>,
        value: &Value,
        path: &str,
    ) -> Result<Offset, CodecError> {
        let name = field.name();
        let here = child(path, name);
        let e = self.union_enum(&field.type_(), &here)?;
        let members: Vec<&str> = e
            .values()
            .iter()
            .filter(|v| v.value() != 0)
            .map(|v| v.name())
            .collect();
        let tag_name = format!("{name}_type");
        if field_named(object, &tag_name).is_none() {
            return fail(&here, format!("the schema has no `{tag_name}` field"));
        }
        let Some(tag) = map.get(&tag_name).filter(|t| !t.is_null()) else {
            return fail(
                path,
                format!(
                    "missing `{tag_name}`: which member of union {} `{name}` holds (one of {})",
                    e.name(),
                    members.join(", ")
                ),
            );
        };
        let tag_path = child(path, &tag_name);
        let tag = self.parse_enum_value(&e, tag, &tag_path)?;
        let Some(member) = e.values().iter().find(|v| i128::from(v.value()) == tag) else {
            return fail(
                &tag_path,
                format!("{tag} is not a member of union {}", e.name()),
            );
        };
        if member.value() == 0 {
            return fail(
                &tag_path,
                format!("`{name}` is set but `{tag_name}` is NONE"),
            );
        }
        let Some(ty) = member.union_type() else {
            return fail(&tag_path, "the schema gives this member no type");
        };
        match ty.base_type() {
            BaseType::Obj => {
                let o = self.object(ty.index()).or_else(|e| fail(&here, e))?;
                if o.is_struct() {
                    return fail(&here, "unions of structs are not supported");
                }
                self.encode_table(fbb, o, value, &here)
            }
            BaseType::String => match value {
                Value::String(s) => Ok(fbb.create_string(s).as_union_value()),
                other => fail(&here, format!("expected a string, got {}", describe(other))),
            },
            other => fail(
                &here,
                format!(
                    "union members of type {} are not supported",
                    type_name(other)
                ),
            ),
        }
    }

    fn encode_vector<'f>(
        &self,
        fbb: &mut FlatBufferBuilder<'f>,
        ty: &Type<'static>,
        value: &Value,
        path: &str,
    ) -> Result<Offset, CodecError> {
        let Value::Array(items) = value else {
            return fail(path, format!("expected an array, got {}", describe(value)));
        };
        let element = ty.element();
        if scalar_size(element).is_some() {
            let scalars = items
                .iter()
                .enumerate()
                .map(|(i, v)| self.parse_scalar(v, element, ty.index(), &index(path, i)))
                .collect::<Result<Vec<_>, _>>()?;
            macro_rules! vector_of {
                ($t:ty) => {{
                    let typed: Vec<$t> = scalars
                        .iter()
                        .map(|s| <$t>::from_le_bytes(le(&scalar_to_le(element, *s))))
                        .collect();
                    fbb.create_vector(&typed).as_union_value()
                }};
            }
            return Ok(match element {
                BaseType::Bool => {
                    let typed: Vec<bool> = scalars
                        .iter()
                        .map(|s| matches!(s, Scalar::Bool(true)))
                        .collect();
                    fbb.create_vector(&typed).as_union_value()
                }
                BaseType::Byte => vector_of!(i8),
                BaseType::UByte | BaseType::UType => vector_of!(u8),
                BaseType::Short => vector_of!(i16),
                BaseType::UShort => vector_of!(u16),
                BaseType::Int => vector_of!(i32),
                BaseType::UInt => vector_of!(u32),
                BaseType::Long => vector_of!(i64),
                BaseType::ULong => vector_of!(u64),
                BaseType::Float => vector_of!(f32),
                _ => vector_of!(f64),
            });
        }
        match element {
            BaseType::String => {
                let mut offsets = Vec::with_capacity(items.len());
                for (i, v) in items.iter().enumerate() {
                    match v {
                        Value::String(s) => offsets.push(fbb.create_string(s)),
                        other => {
                            return fail(
                                &index(path, i),
                                format!("expected a string, got {}", describe(other)),
                            )
                        }
                    }
                }
                Ok(fbb.create_vector(&offsets).as_union_value())
            }
            BaseType::Obj => {
                let o = self.object(ty.index()).or_else(|e| fail(path, e))?;
                if o.is_struct() {
                    let mut bytes = Vec::new();
                    for (i, v) in items.iter().enumerate() {
                        bytes.extend(self.struct_bytes(&o, v, &index(path, i))?);
                    }
                    return push_struct_vector(fbb, &o, &bytes, items.len(), path);
                }
                let mut offsets = Vec::with_capacity(items.len());
                for (i, v) in items.iter().enumerate() {
                    offsets.push(self.encode_table(fbb, o, v, &index(path, i))?);
                }
                Ok(fbb.create_vector(&offsets).as_union_value())
            }
            other => fail(
                path,
                format!("vectors of {} are not supported", type_name(other)),
            ),
        }
    }

    /// A struct's bytes, laid out as the schema says (padding zeroed).
    fn struct_bytes(
        &self,
        object: &Object<'static>,
        value: &Value,
        path: &str,
    ) -> Result<Vec<u8>, CodecError> {
        let size = usize::try_from(object.bytesize()).unwrap_or(0);
        let mut out = vec![0u8; size];
        let fields = fields_by_id(object);
        // A UUID string for `struct Uuid { bytes: [ubyte:16]; }`.
        if let (Value::String(s), [only]) = (value, fields.as_slice()) {
            let ty = only.type_();
            if ty.base_type() == BaseType::Array
                && ty.element() == BaseType::UByte
                && ty.fixed_length() == 16
            {
                let Ok(id) = uuid::Uuid::parse_str(s) else {
                    return fail(path, format!("{} is not a UUID", describe(value)));
                };
                let at = usize::from(only.offset());
                if let Some(slot) = out.get_mut(at..at + 16) {
                    slot.copy_from_slice(id.as_bytes());
                }
                return Ok(out);
            }
        }
        let Value::Object(map) = value else {
            return fail(
                path,
                format!(
                    "expected an object (struct {}), got {}",
                    object.name(),
                    describe(value)
                ),
            );
        };
        for key in map.keys() {
            if field_named(object, key).is_none() {
                let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
                return fail(
                    path,
                    format!(
                        "unknown field `{key}` in struct {} (fields: {})",
                        object.name(),
                        names.join(", ")
                    ),
                );
            }
        }
        for field in &fields {
            let name = field.name();
            let here = child(path, name);
            let Some(v) = map.get(name) else {
                return fail(
                    path,
                    format!(
                        "missing field `{name}`: a struct ({}) needs all its fields",
                        object.name()
                    ),
                );
            };
            let at = usize::from(field.offset());
            let ty = field.type_();
            let (element, element_index, count, items): (BaseType, i32, usize, Vec<&Value>) =
                if ty.base_type() == BaseType::Array {
                    let n = usize::from(ty.fixed_length());
                    let Value::Array(list) = v else {
                        return fail(
                            &here,
                            format!("expected an array of {n}, got {}", describe(v)),
                        );
                    };
                    if list.len() != n {
                        return fail(&here, format!("expected {n} elements, got {}", list.len()));
                    }
                    (ty.element(), ty.index(), n, list.iter().collect())
                } else {
                    (ty.base_type(), ty.index(), 1, vec![v])
                };
            let element_size = if element == BaseType::Obj {
                let o = self.object(element_index).or_else(|e| fail(&here, e))?;
                usize::try_from(o.bytesize()).unwrap_or(0)
            } else {
                scalar_size(element).unwrap_or(0)
            };
            for (i, item) in items.into_iter().enumerate() {
                let item_path = if count == 1 && ty.base_type() != BaseType::Array {
                    here.clone()
                } else {
                    index(&here, i)
                };
                let bytes = if element == BaseType::Obj {
                    let o = self.object(element_index).or_else(|e| fail(&here, e))?;
                    self.struct_bytes(&o, item, &item_path)?
                } else if scalar_size(element).is_some() {
                    let s = self.parse_scalar(item, element, element_index, &item_path)?;
                    scalar_to_le(element, s)
                } else {
                    return fail(&here, format!("a {} in a struct", type_name(element)));
                };
                let start = at + i * element_size;
                match out.get_mut(start..start + bytes.len()) {
                    Some(slot) => slot.copy_from_slice(&bytes),
                    None => return fail(&here, "the schema's struct layout is inconsistent"),
                }
            }
        }
        Ok(out)
    }
}

/// The unit a struct is pushed in: its alignment (the builder aligns each push to
/// its size, so pushing a struct as pieces of its alignment keeps it aligned).
fn struct_alignment(object: &Object<'_>, len: usize, path: &str) -> Result<usize, CodecError> {
    let align = usize::try_from(object.minalign()).unwrap_or(0);
    match align {
        1 | 2 | 4 | 8 if len.is_multiple_of(align) => Ok(align),
        _ => fail(
            path,
            format!(
                "struct {} has an alignment of {align} bytes, which is not supported",
                object.name()
            ),
        ),
    }
}

/// Pushes `bytes` back to front in pieces of `align` bytes; the last push (the
/// struct's first bytes) goes into `slot` when given.
fn push_pieces(fbb: &mut FlatBufferBuilder<'_>, bytes: &[u8], align: usize, slot: Option<u16>) {
    let count = bytes.len() / align;
    for i in (0..count).rev() {
        let piece = &bytes[i * align..(i + 1) * align];
        let slot = if i == 0 { slot } else { None };
        macro_rules! push {
            ($t:ty) => {{
                let v = <$t>::from_le_bytes(le(piece));
                match slot {
                    Some(s) => fbb.push_slot_always(s, v),
                    None => {
                        fbb.push(v);
                    }
                }
            }};
        }
        match align {
            1 => push!(u8),
            2 => push!(u16),
            4 => push!(u32),
            _ => push!(u64),
        }
    }
}

/// Pushes a struct inline into the table being built, at `slot`.
fn push_struct(
    fbb: &mut FlatBufferBuilder<'_>,
    object: &Object<'_>,
    bytes: &[u8],
    slot: Option<u16>,
    path: &str,
) -> Result<(), CodecError> {
    let align = struct_alignment(object, bytes.len(), path)?;
    if bytes.is_empty() {
        return Ok(());
    }
    push_pieces(fbb, bytes, align, slot);
    Ok(())
}

/// A vector of `count` structs whose bytes follow each other in `bytes`.
fn push_struct_vector(
    fbb: &mut FlatBufferBuilder<'_>,
    object: &Object<'_>,
    bytes: &[u8],
    count: usize,
    path: &str,
) -> Result<Offset, CodecError> {
    let align = struct_alignment(object, bytes.len(), path)?;
    let pieces = bytes.len() / align;
    macro_rules! vector {
        ($t:ty) => {{
            fbb.start_vector::<$t>(pieces);
            push_pieces(fbb, bytes, align, None);
            fbb.end_vector::<$t>(count).as_union_value()
        }};
    }
    Ok(match align {
        1 => vector!(u8),
        2 => vector!(u16),
        4 => vector!(u32),
        _ => vector!(u64),
    })
}

// --- decoding ---------------------------------------------------------------------

/// Bounds-checked reads of an untrusted buffer.
struct Reader<'b> {
    buf: &'b [u8],
    nodes: Cell<usize>,
}

/// A table in the buffer: where it starts, its vtable and the vtable's length.
struct TableAt {
    pos: usize,
    vtable: usize,
    vtable_len: usize,
    size: usize,
}

impl<'b> Reader<'b> {
    fn bytes(&self, pos: usize, len: usize, path: &str) -> Result<&'b [u8], CodecError> {
        match pos.checked_add(len).and_then(|end| self.buf.get(pos..end)) {
            Some(b) => Ok(b),
            None => fail(
                path,
                format!(
                    "the payload is truncated or malformed ({len} bytes at {pos} of {})",
                    self.buf.len()
                ),
            ),
        }
    }

    fn u16(&self, pos: usize, path: &str) -> Result<usize, CodecError> {
        Ok(u16::from_le_bytes(le(self.bytes(pos, 2, path)?)).into())
    }

    fn u32(&self, pos: usize, path: &str) -> Result<usize, CodecError> {
        let v = u32::from_le_bytes(le(self.bytes(pos, 4, path)?));
        usize::try_from(v).or_else(|_| fail(path, "offset too large"))
    }

    /// Follows the unsigned offset stored at `pos`.
    fn uoffset(&self, pos: usize, path: &str) -> Result<usize, CodecError> {
        let target = pos.checked_add(self.u32(pos, path)?);
        match target.filter(|t| *t < self.buf.len()) {
            Some(t) => Ok(t),
            None => fail(path, "an offset points outside the payload"),
        }
    }

    fn visit(&self, path: &str) -> Result<(), CodecError> {
        let n = self.nodes.get() + 1;
        self.nodes.set(n);
        if n > MAX_NODES {
            return fail(
                path,
                format!("the payload holds more than {MAX_NODES} values"),
            );
        }
        Ok(())
    }

    fn table(&self, pos: usize, path: &str) -> Result<TableAt, CodecError> {
        self.visit(path)?;
        let soffset = i32::from_le_bytes(le(self.bytes(pos, 4, path)?));
        let vtable = i64::try_from(pos)
            .ok()
            .map(|p| p - i64::from(soffset))
            .and_then(|v| usize::try_from(v).ok());
        let Some(vtable) = vtable else {
            return fail(path, "a table's vtable lies outside the payload");
        };
        let vtable_len = self.u16(vtable, path)?;
        let size = self.u16(vtable + 2, path)?;
        if vtable_len < 4 || !vtable_len.is_multiple_of(2) {
            return fail(path, "a table has a malformed vtable");
        }
        self.bytes(vtable, vtable_len, path)?;
        self.bytes(pos, size.max(4), path)?;
        Ok(TableAt {
            pos,
            vtable,
            vtable_len,
            size,
        })
    }

    /// Where field `slot` (its vtable offset) of `table` is, when present.
    fn field(&self, table: &TableAt, slot: u16, path: &str) -> Result<Option<usize>, CodecError> {
        let slot = usize::from(slot);
        if slot + 2 > table.vtable_len {
            return Ok(None);
        }
        let offset = self.u16(table.vtable + slot, path)?;
        if offset == 0 {
            return Ok(None);
        }
        if offset >= table.size {
            return fail(path, "a field lies outside its table");
        }
        Ok(Some(table.pos + offset))
    }

    fn string(&self, pos: usize, path: &str) -> Result<&'b str, CodecError> {
        self.visit(path)?;
        let len = self.u32(pos, path)?;
        let bytes = self.bytes(pos + 4, len, path)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s),
            Err(_) => fail(path, "a string is not valid UTF-8"),
        }
    }

    fn scalar(&self, pos: usize, base: BaseType, path: &str) -> Result<Scalar, CodecError> {
        let size = scalar_size(base).unwrap_or(0);
        match scalar_from_le(base, self.bytes(pos, size, path)?) {
            Some(s) => Ok(s),
            None => fail(path, format!("a {} is not a scalar", type_name(base))),
        }
    }
}

impl Schema {
    fn decode_table(
        &self,
        r: &Reader<'_>,
        object: Object<'static>,
        pos: usize,
        depth: usize,
        path: &str,
    ) -> Result<Json, CodecError> {
        if depth > MAX_DEPTH {
            return fail(path, format!("tables nest deeper than {MAX_DEPTH}"));
        }
        let table = r.table(pos, path)?;
        let mut members = Vec::new();
        for field in fields_by_id(&object) {
            if field.deprecated() {
                continue;
            }
            let name = field.name();
            let here = child(path, name);
            let ty = field.type_();
            let base = ty.base_type();
            let at = r.field(&table, field.offset(), &here)?;
            let value = match base {
                _ if scalar_size(base).is_some() => match at {
                    Some(p) => self.scalar_json(r.scalar(p, base, &here)?, ty.index()),
                    None if field.optional() => Json::Null,
                    None => self.scalar_json(default_scalar(&field, base), ty.index()),
                },
                BaseType::String => match at {
                    Some(p) => Json::from(r.string(r.uoffset(p, &here)?, &here)?),
                    None => continue,
                },
                BaseType::Obj => {
                    let Some(p) = at else { continue };
                    let o = self.object(ty.index()).or_else(|e| fail(&here, e))?;
                    if o.is_struct() {
                        self.decode_struct(r, &o, p, &here)?
                    } else {
                        self.decode_table(r, o, r.uoffset(p, &here)?, depth + 1, &here)?
                    }
                }
                BaseType::Union => {
                    let Some(p) = at else { continue };
                    match self.decode_union(r, &object, &table, &field, p, depth, &here)? {
                        Some(v) => v,
                        None => continue,
                    }
                }
                BaseType::Vector => {
                    let Some(p) = at else { continue };
                    self.decode_vector(r, &ty, r.uoffset(p, &here)?, depth, &here)?
                }
                other => {
                    return fail(
                        &here,
                        format!("fields of type {} are not supported", type_name(other)),
                    )
                }
            };
            members.push((name.to_string(), value));
        }
        Ok(Json::Object(members))
    }

    #[allow(clippy::too_many_arguments)]
    fn decode_union(
        &self,
        r: &Reader<'_>,
        object: &Object<'static>,
        table: &TableAt,
        field: &Field<'static>,
        pos: usize,
        depth: usize,
        path: &str,
    ) -> Result<Option<Json>, CodecError> {
        let tag_name = format!("{}_type", field.name());
        let Some(tag_field) = field_named(object, &tag_name) else {
            return fail(path, format!("the schema has no `{tag_name}` field"));
        };
        let tag = match r.field(table, tag_field.offset(), path)? {
            Some(p) => r.scalar(p, BaseType::UType, path)?,
            None => Scalar::Int(0),
        };
        let Scalar::Int(tag) = tag else {
            return Ok(None);
        };
        if tag == 0 {
            return Ok(None);
        }
        let e = self.union_enum(&field.type_(), path)?;
        let Some(member) = e.values().iter().find(|v| i128::from(v.value()) == tag) else {
            return fail(path, format!("{tag} is not a member of union {}", e.name()));
        };
        let Some(ty) = member.union_type() else {
            return fail(path, "the schema gives this member no type");
        };
        let target = r.uoffset(pos, path)?;
        match ty.base_type() {
            BaseType::Obj => {
                let o = self.object(ty.index()).or_else(|e| fail(path, e))?;
                if o.is_struct() {
                    return fail(path, "unions of structs are not supported");
                }
                Ok(Some(self.decode_table(r, o, target, depth + 1, path)?))
            }
            BaseType::String => Ok(Some(Json::from(r.string(target, path)?))),
            other => fail(
                path,
                format!(
                    "union members of type {} are not supported",
                    type_name(other)
                ),
            ),
        }
    }

    fn decode_vector(
        &self,
        r: &Reader<'_>,
        ty: &Type<'static>,
        pos: usize,
        depth: usize,
        path: &str,
    ) -> Result<Json, CodecError> {
        r.visit(path)?;
        let len = r.u32(pos, path)?;
        let start = pos + 4;
        let element = ty.element();
        let (stride, object) = match element {
            BaseType::String => (4, None),
            BaseType::Obj => {
                let o = self.object(ty.index()).or_else(|e| fail(path, e))?;
                let stride = if o.is_struct() {
                    usize::try_from(o.bytesize()).unwrap_or(0)
                } else {
                    4
                };
                (stride, Some(o))
            }
            _ => match scalar_size(element) {
                Some(size) => (size, None),
                None => {
                    return fail(
                        path,
                        format!("vectors of {} are not supported", type_name(element)),
                    )
                }
            },
        };
        let total = len.checked_mul(stride);
        match total {
            Some(total) => {
                r.bytes(start, total, path)?;
            }
            None => return fail(path, "a vector's length is out of range"),
        }
        let mut items = Vec::with_capacity(len.min(r.buf.len()));
        for i in 0..len {
            let here = index(path, i);
            let at = start + i * stride;
            let item = match (element, object) {
                (BaseType::String, _) => Json::from(r.string(r.uoffset(at, &here)?, &here)?),
                (BaseType::Obj, Some(o)) if o.is_struct() => {
                    self.decode_struct(r, &o, at, &here)?
                }
                (BaseType::Obj, Some(o)) => {
                    self.decode_table(r, o, r.uoffset(at, &here)?, depth + 1, &here)?
                }
                _ => {
                    r.visit(&here)?;
                    self.scalar_json(r.scalar(at, element, &here)?, ty.index())
                }
            };
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn decode_struct(
        &self,
        r: &Reader<'_>,
        object: &Object<'static>,
        pos: usize,
        path: &str,
    ) -> Result<Json, CodecError> {
        r.visit(path)?;
        let size = usize::try_from(object.bytesize()).unwrap_or(0);
        r.bytes(pos, size, path)?;
        let mut members = Vec::new();
        for field in fields_by_id(object) {
            let name = field.name();
            let here = child(path, name);
            let ty = field.type_();
            let at = pos + usize::from(field.offset());
            let value = match ty.base_type() {
                BaseType::Obj => {
                    let o = self.object(ty.index()).or_else(|e| fail(&here, e))?;
                    self.decode_struct(r, &o, at, &here)?
                }
                BaseType::Array => {
                    let element = ty.element();
                    let (stride, nested) = if element == BaseType::Obj {
                        let o = self.object(ty.index()).or_else(|e| fail(&here, e))?;
                        (usize::try_from(o.bytesize()).unwrap_or(0), Some(o))
                    } else {
                        (scalar_size(element).unwrap_or(0), None)
                    };
                    let mut items = Vec::new();
                    for i in 0..usize::from(ty.fixed_length()) {
                        let item_at = at + i * stride;
                        items.push(match nested {
                            Some(o) => self.decode_struct(r, &o, item_at, &index(&here, i))?,
                            None => {
                                self.scalar_json(r.scalar(item_at, element, &here)?, ty.index())
                            }
                        });
                    }
                    Json::Array(items)
                }
                base => self.scalar_json(r.scalar(at, base, &here)?, ty.index()),
            };
            members.push((name.to_string(), value));
        }
        Ok(Json::Object(members))
    }
}
