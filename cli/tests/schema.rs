//! The JSON codec of `fw` (`framework_cli::schema`) against the two references:
//! the framework's own `#[derive(Message)]` encoding and decoding, and
//! `flatc --json` / `flatc --binary` on the exported schema. Every kind of field a
//! derived message has (scalars at their limits, enums, unions, UUID structs,
//! nested tables, vectors of each) goes through both directions, from a `.fbs`
//! (compiled by flatc) and from a `.bfbs` (read in process); then malformed
//! buffers and JSON that does not fit are refused with errors, never a panic.
//!
//! `flatc` 25.12.19 is required (scripts/test.sh installs it).

mod support;

use std::path::Path;

use framework::Message;
use framework_cli::schema::Schema;
use serde_json::{json, Value};
use support::{compile_bfbs, flatc, TempDir};
use uuid::Uuid;

#[path = "../../tests/fixtures/every_kind.rs"]
mod every_kind;
use every_kind::*;

/// All defaults; every field set, at its limits; a mix (the deprecated field at
/// 0: a round trip drops it).
fn cases() -> Vec<Person> {
    every_kind::cases("Ada Lovelace — 数学 🦀 \"quoted\"", 0)
}

/// The exported schema of every derived type here, as `.fbs` (with Person as
/// its root_type, so flatc converts without being told) and as `.bfbs`.
fn schemas(dir: &TempDir) -> (std::path::PathBuf, std::path::PathBuf) {
    let fbs = dir.join("person.fbs");
    let text = framework::registry::export_schema(Some("people")).expect("a schema");
    std::fs::write(&fbs, format!("{text}\nroot_type Person;\n")).unwrap();
    let bfbs = compile_bfbs(&fbs);
    (fbs, bfbs)
}

/// flatc's JSON for a Person buffer (all scalars, defaults included).
fn flatc_json(dir: &TempDir, fbs: &Path, buffer: &[u8]) -> Value {
    let bin = dir.join("flatc-in.bin");
    std::fs::write(&bin, buffer).unwrap();
    flatc(&[
        "--json".as_ref(),
        "--strict-json".as_ref(),
        "--defaults-json".as_ref(),
        "--raw-binary".as_ref(),
        "-o".as_ref(),
        dir.0.as_os_str(),
        fbs.as_os_str(),
        "--".as_ref(),
        bin.as_os_str(),
    ]);
    let text = std::fs::read_to_string(dir.join("flatc-in.json")).expect("flatc wrote JSON");
    serde_json::from_str(&text).expect("flatc's JSON parses")
}

/// flatc's binary for JSON text (flatc wants a union's `_type` before it).
fn flatc_binary(dir: &TempDir, fbs: &Path, json: &str) -> Vec<u8> {
    let input = dir.join("flatc-out.json");
    std::fs::write(&input, json).unwrap();
    flatc(&[
        "--binary".as_ref(),
        "-o".as_ref(),
        dir.0.as_os_str(),
        fbs.as_os_str(),
        input.as_os_str(),
    ]);
    std::fs::read(dir.join("flatc-out.bin")).expect("flatc wrote a binary")
}

/// Numbers compare by value: flatc and serde print floats differently.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(p), Some(q), _, _) => p == q,
                (_, _, Some(p), Some(q)) => p == q,
                // flatc prints a float as its double (0.1f32: 0.10000000149011612).
                _ => match (x.as_f64(), y.as_f64()) {
                    (Some(p), Some(q)) => p == q || (p - q).abs() <= 1e-7 * p.abs().max(q.abs()),
                    _ => false,
                },
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn derived_messages_round_trip_exactly_through_fbs_and_bfbs_schemas() {
    let dir = TempDir::new("codec");
    let (fbs, bfbs) = schemas(&dir);
    let from_fbs = Schema::load(&fbs, None).expect("the .fbs loads through flatc");
    // A binary schema needs no flatc at all.
    let from_bfbs =
        Schema::load(&bfbs, Some(Path::new("/nonexistent/flatc"))).expect("the .bfbs loads");
    for schema in [from_fbs, from_bfbs] {
        assert_eq!(schema.root_type(), Some("people.Person"));
        assert_eq!(schema.resolve("Person").unwrap(), "people.Person");
        for person in cases() {
            // What Rust encodes decodes to JSON that encodes back to the same
            // value, through the JSON text too (floats at their limits included).
            let decoded = schema.decode("Person", &person.encode()).expect("decodes");
            let text: Value = serde_json::from_str(&decoded.to_string()).unwrap();
            let bytes = schema.encode("Person", &text).expect("encodes");
            assert_eq!(Person::decode(&bytes).expect("Rust decodes it"), person);
        }
    }
}

/// The cases with doubles that flatc prints exactly (12 digits, in fixed
/// notation when small: 2.5e-300 prints as 0.0, and f64::MAX does not parse back).
fn flatc_cases() -> Vec<Person> {
    let mut cases = cases();
    let full = &mut cases[1];
    full.numbers.f64 = -1234.5;
    full.floats = vec![0.5, -3.25, 1.5e38, 0.1];
    full.doubles = vec![1e300, 0.25, 0.125];
    cases
}

#[test]
fn the_json_is_flatcs_both_ways() {
    let dir = TempDir::new("flatc");
    let (fbs, bfbs) = schemas(&dir);
    let schema = Schema::load(&bfbs, None).unwrap();
    for person in flatc_cases() {
        let rust = person.encode();
        // Rust's bytes decode to what flatc decodes them to.
        let decoded = schema.decode("Person", &rust).expect("decodes");
        let ours = decoded.to_value();
        let reference = flatc_json(&dir, &fbs, &rust);
        assert!(
            same(&ours, &reference),
            "decoding {person:?}\nours:  {ours}\nflatc: {reference}"
        );
        // flatc's JSON encodes to the same Person.
        let bytes = schema.encode("Person", &reference).expect("encodes");
        assert_eq!(Person::decode(&bytes).expect("Rust decodes it"), person);
        // flatc encodes our JSON to what decodes to our JSON (flatc's buffers
        // are aligned from their end, not their start, which Rust's verifier
        // refuses when their length is not a multiple of 8: compare as JSON).
        let flatc_bytes = flatc_binary(&dir, &fbs, &decoded.to_string());
        let again = schema
            .decode("Person", &flatc_bytes)
            .expect("decodes flatc's");
        assert!(same(&again.to_value(), &ours), "{again} != {ours}");
    }
}

#[test]
fn json_shortcuts_and_field_order() {
    let dir = TempDir::new("shortcuts");
    let (_, bfbs) = schemas(&dir);
    let schema = Schema::load(&bfbs, None).unwrap();
    // A UUID string for a Uuid struct, enums by number, numbers in strings,
    // `null` for absent fields, "inf" for a float.
    let json = json!({
        "id": "00112233-4455-6677-8899-aabbccddeeff",
        "name": "short",
        "numbers": { "u64": "18446744073709551615", "f64": "-inf", "b": 1 },
        "friends": ["00000000-0000-0000-0000-00000000002a"],
        "color": 5,
        "mood": "Glad",
        "home": { "street": "High St", "number": 1 },
        "work": null,
        "pet_type": "Kitten",
        "pet": { "lives": 3 },
    });
    let bytes = schema.encode("Person", &json).unwrap();
    let person = Person::decode(&bytes).unwrap();
    assert_eq!(
        person.id,
        Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff)
    );
    assert_eq!(person.numbers.u64, u64::MAX);
    assert_eq!(person.numbers.f64, f64::NEG_INFINITY);
    assert!(person.numbers.b);
    assert_eq!(person.friends, vec![Uuid::from_u128(42)]);
    assert_eq!((person.color, person.mood), (Color::Green, Mood::Glad));
    assert_eq!(person.work, None);
    assert_eq!(person.pet, Pet::Young(Cat { lives: 3 }));

    // Decoded fields come in the schema's order; -inf prints as flatc reads it.
    let decoded = schema.decode("Person", &bytes).unwrap();
    let text = decoded.to_string();
    let order: Vec<usize> = [
        "\"id\"",
        "\"name\"",
        "\"numbers\"",
        "\"home\"",
        "\"pet_type\"",
        "\"pet\"",
    ]
    .iter()
    .map(|k| text.find(k).unwrap_or_else(|| panic!("{k} in {text}")))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert!(text.contains(r#""f64":"-inf""#), "{text}");
    assert!(text.contains(r#""pet_type":"Kitten""#), "{text}");
}

#[test]
fn json_that_does_not_fit_is_refused_with_where_and_why() {
    let dir = TempDir::new("refused");
    let (_, bfbs) = schemas(&dir);
    let schema = Schema::load(&bfbs, None).unwrap();
    let cases = [
        (
            json!({ "nam": "x" }),
            "",
            "unknown field `nam` in table people.Person",
        ),
        (
            json!({ "numbers": { "u8": 256 } }),
            ".numbers.u8",
            "256 is out of range for a ubyte",
        ),
        (
            json!({ "numbers": { "i8": 1.5 } }),
            ".numbers.i8",
            "expected a byte, got 1.5",
        ),
        (json!({ "name": 3 }), ".name", "expected a string, got 3"),
        (
            json!({ "tags": ["a", 1] }),
            ".tags[1]",
            "expected a string, got 1",
        ),
        (
            json!({ "color": "Purple" }),
            ".color",
            "`Purple` is not a value of enum people.Color",
        ),
        (json!({ "pet": { "lives": 1 } }), "", "missing `pet_type`"),
        (
            json!({ "pet_type": "Cat", "pet": { "name": "x" } }),
            ".pet",
            "unknown field `name` in table people.Cat",
        ),
        (json!({ "id": "not-a-uuid" }), ".id", "is not a UUID"),
        (
            json!({ "id": { "bytes": [1, 2] } }),
            ".id.bytes",
            "expected 16 elements, got 2",
        ),
        (json!({ "legacy": 3 }), ".legacy", "deprecated"),
        (
            json!([1, 2]),
            "",
            "expected an object (table people.Person), got an array",
        ),
    ];
    for (json, path, message) in cases {
        let err = schema.encode("Person", &json).expect_err(&json.to_string());
        assert_eq!(err.path, path, "{json}: {err}");
        assert!(err.message.contains(message), "{json}: {err}");
    }
    let err = schema.resolve("Nobody").unwrap_err().to_string();
    assert!(
        err.contains("no table `Nobody`") && err.contains("people.Person"),
        "{err}"
    );
    let err = schema.resolve("Uuid").unwrap_err().to_string();
    assert!(err.contains("is a struct"), "{err}");
}

#[test]
fn malformed_buffers_are_errors_never_panics() {
    let dir = TempDir::new("malformed");
    let (_, bfbs) = schemas(&dir);
    let schema = Schema::load(&bfbs, None).unwrap();
    let full = cases()[1].encode().to_vec();
    // Every truncation, and every single-byte corruption.
    for len in 0..full.len() {
        let _ = schema.decode("Person", &full[..len]);
    }
    for i in 0..full.len() {
        for value in [0x00, 0xff, 0x7f, 0x80] {
            let mut bad = full.clone();
            bad[i] = value;
            let _ = schema.decode("Person", &bad);
        }
    }
    let err = schema.decode("Person", b"").unwrap_err();
    assert!(err.message.contains("truncated"), "{err}");
    // A table that points at itself a million times is cut off, not expanded.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        let len = (rng % 200) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect();
        let _ = schema.decode("Person", &bytes);
    }
}

#[test]
fn schema_files_that_cannot_load_say_why() {
    let dir = TempDir::new("load");
    let missing = Schema::load(&dir.join("none.fbs"), None)
        .unwrap_err()
        .to_string();
    assert!(missing.contains("cannot read the schema"), "{missing}");

    let fbs = dir.join("bad.fbs");
    std::fs::write(&fbs, "table T { x: nosuchtype; }").unwrap();
    let bad = Schema::load(&fbs, None).unwrap_err().to_string();
    assert!(
        bad.contains("could not compile the schema") && bad.contains("nosuchtype"),
        "{bad}"
    );

    std::fs::write(&fbs, "table T { x: int; }").unwrap();
    let no_flatc = Schema::load(&fbs, Some(Path::new("/nonexistent/flatc")))
        .unwrap_err()
        .to_string();
    assert!(
        no_flatc.contains("/nonexistent/flatc") && no_flatc.contains("does not exist"),
        "{no_flatc}"
    );
}
