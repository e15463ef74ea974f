//! `#[derive(Message)]` without sockets: round trips of every supported field
//! type (enums and unions included), absent fields, schema evolution (appended,
//! deprecated and pinned fields), the exported `.fbs` text, and property tests that
//! decoding untrusted bytes never panics and that encode → decode is the identity.

use std::collections::HashMap;

use framework::message::DecodeError;
use framework::Message;
use proptest::collection::vec;
use proptest::prelude::*;
use uuid::Uuid;

// ---------------------------------------------------------------- types

#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Scalars {
    b: bool,
    i8: i8,
    u8: u8,
    i16: i16,
    u16: u16,
    i32: i32,
    u32: u32,
    i64: i64,
    u64: u64,
    f32: f32,
    f64: f64,
}

#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Vectors {
    bytes: Vec<u8>,
    i8: Vec<i8>,
    i16: Vec<i16>,
    u16: Vec<u16>,
    i32: Vec<i32>,
    u32: Vec<u32>,
    i64: Vec<i64>,
    u64: Vec<u64>,
    f32: Vec<f32>,
    f64: Vec<f64>,
    strings: Vec<String>,
    uuids: Vec<Uuid>,
    inners: Vec<Inner>,
}

#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Options {
    b: Option<bool>,
    i8: Option<i8>,
    u8: Option<u8>,
    i16: Option<i16>,
    u16: Option<u16>,
    i32: Option<i32>,
    u32: Option<u32>,
    i64: Option<i64>,
    u64: Option<u64>,
    f32: Option<f32>,
    f64: Option<f64>,
    s: Option<String>,
    bytes: Option<Vec<u8>>,
    u32s: Option<Vec<u32>>,
    strings: Option<Vec<String>>,
    uuid: Option<Uuid>,
    uuids: Option<Vec<Uuid>>,
    inner: Option<Inner>,
    inners: Option<Vec<Inner>>,
}

#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Inner {
    name: String,
    id: Uuid,
}

#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Text {
    s: String,
    id: Uuid,
}

/// Nested messages: one level and four levels deep.
#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Nested {
    inner: Inner,
    deep: Level1,
}

#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Level1 {
    l2: Level2,
    tag: u8,
}

#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Level2 {
    l3: Option<Level3>,
    l3s: Vec<Level3>,
}

#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Level3 {
    leaf: Inner,
    note: String,
}

/// Recursive through a vector.
#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Tree {
    value: i32,
    children: Vec<Tree>,
}

/// A table with no fields: what a struct whose fields are all absent looks like.
#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Empty {}

// ------------------------------------------------------ round trips

fn round_trip<M: Message + std::fmt::Debug + PartialEq>(value: &M) {
    let bytes = value.encode();
    let back = M::decode(&bytes).unwrap_or_else(|e| panic!("{value:?} does not decode: {e}"));
    assert_eq!(&back, value);
}

#[test]
fn every_scalar_round_trips_at_its_limits() {
    round_trip(&Scalars::default());
    round_trip(&Scalars {
        b: true,
        i8: i8::MIN,
        u8: u8::MAX,
        i16: i16::MIN,
        u16: u16::MAX,
        i32: i32::MIN,
        u32: u32::MAX,
        i64: i64::MIN,
        u64: u64::MAX,
        f32: f32::MIN_POSITIVE,
        f64: f64::MAX,
    });
    round_trip(&Scalars {
        b: false,
        i8: i8::MAX,
        u8: 1,
        i16: i16::MAX,
        u16: 1,
        i32: i32::MAX,
        u32: 1,
        i64: i64::MAX,
        u64: 1,
        f32: f32::INFINITY,
        f64: -1.5e-300,
    });
    let nan = Scalars::decode(
        &Scalars {
            f32: f32::NAN,
            f64: f64::NAN,
            ..Scalars::default()
        }
        .encode(),
    )
    .unwrap();
    assert!(nan.f32.is_nan() && nan.f64.is_nan());
}

/// FlatBuffers omits a field equal to its default, and `-0.0 == 0.0`: the sign of
/// a negative zero must still survive (compare bits, not values, before omitting).
#[test]
fn negative_zero_keeps_its_sign() {
    let value = Scalars {
        f32: -0.0,
        f64: -0.0,
        ..Scalars::default()
    };
    let back = Scalars::decode(&value.encode()).unwrap();
    assert!(
        back.f32.is_sign_negative() && back.f64.is_sign_negative(),
        "-0.0 decoded as {:?} / {:?}",
        back.f32,
        back.f64
    );
}

#[test]
fn strings_and_uuids_round_trip() {
    round_trip(&Text::default());
    round_trip(&Text {
        s: "héllo, мир, 世界, 🦀 \0 \n".into(),
        id: Uuid::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210),
    });
    round_trip(&Text {
        s: "x".repeat(100_000),
        id: Uuid::max(),
    });
    // The UUID keeps its byte order (network order, as `Uuid::as_bytes`).
    let id = Uuid::new_v4();
    let back = Text::decode(
        &Text {
            s: String::new(),
            id,
        }
        .encode(),
    )
    .unwrap();
    assert_eq!(back.id.as_bytes(), id.as_bytes());
}

#[test]
fn vectors_of_every_element_type_round_trip() {
    round_trip(&Vectors::default());
    round_trip(&Vectors {
        bytes: (0..=255).collect(),
        i8: vec![i8::MIN, -1, 0, 1, i8::MAX],
        i16: vec![i16::MIN, 0, i16::MAX],
        u16: vec![0, 1, u16::MAX],
        i32: vec![i32::MIN, 0, i32::MAX],
        u32: vec![0, u32::MAX],
        i64: vec![i64::MIN, -1, i64::MAX],
        u64: vec![0, u64::MAX],
        f32: vec![0.0, 1.5, -2.25, f32::MAX],
        f64: vec![0.0, -1e300, f64::EPSILON],
        strings: vec![String::new(), "a".into(), "ünï".into()],
        uuids: vec![Uuid::nil(), Uuid::from_u128(7), Uuid::max()],
        inners: vec![
            Inner::default(),
            Inner {
                name: "second".into(),
                id: Uuid::from_u128(2),
            },
        ],
    });
    // One element each, and many elements.
    round_trip(&Vectors {
        bytes: vec![0],
        strings: vec![String::new()],
        inners: vec![Inner::default()],
        u64: (0..10_000).collect(),
        ..Vectors::default()
    });
}

/// `Vec<bool>` is a vector of scalars (`[bool]` in FlatBuffers) and the docs
/// promise `Vec` of scalars; it must be a supported field type.
#[test]
#[allow(clippy::needless_borrow)] // the borrow is what makes the probe work
fn vec_of_bool_is_a_supported_field_type() {
    use std::marker::PhantomData;
    struct Probe<T>(PhantomData<T>);
    trait Supported {
        fn supported(&self) -> bool {
            true
        }
    }
    impl<T: framework::message::Field> Supported for Probe<T> {}
    trait Unsupported {
        fn supported(&self) -> bool {
            false
        }
    }
    impl<T> Unsupported for &Probe<T> {}
    // Autoref specialization: picks `Supported` only when `T: Field`.
    assert!(
        (&Probe::<Vec<u8>>(PhantomData)).supported(),
        "probe is broken"
    );
    assert!(
        !(&Probe::<HashMap<u8, u8>>(PhantomData)).supported(),
        "probe is broken"
    );
    assert!(
        (&Probe::<Vec<bool>>(PhantomData)).supported(),
        "`Vec<bool>` does not implement framework::message::Field (field.rs implements \
         `Vec<T>` for the numeric scalars only)"
    );
}

#[test]
fn options_tell_some_default_from_none() {
    round_trip(&Options::default());
    let zeros = Options {
        b: Some(false),
        i8: Some(0),
        u8: Some(0),
        i16: Some(0),
        u16: Some(0),
        i32: Some(0),
        u32: Some(0),
        i64: Some(0),
        u64: Some(0),
        f32: Some(0.0),
        f64: Some(0.0),
        s: Some(String::new()),
        bytes: Some(vec![]),
        u32s: Some(vec![]),
        strings: Some(vec![]),
        uuid: Some(Uuid::nil()),
        uuids: Some(vec![]),
        inner: Some(Inner::default()),
        inners: Some(vec![]),
    };
    round_trip(&zeros);
    let back = Options::decode(&zeros.encode()).unwrap();
    assert_eq!(back.u32, Some(0));
    assert_eq!(back.b, Some(false));
    assert_eq!(back.s.as_deref(), Some(""));
    assert_eq!(back.inner, Some(Inner::default()));
    round_trip(&Options {
        b: Some(true),
        i8: Some(-8),
        u64: Some(u64::MAX),
        f64: Some(-0.5),
        s: Some("s".into()),
        bytes: Some(vec![1, 2, 3]),
        u32s: Some(vec![4, 5]),
        strings: Some(vec!["x".into()]),
        uuid: Some(Uuid::from_u128(9)),
        uuids: Some(vec![Uuid::from_u128(10)]),
        inner: Some(Inner {
            name: "in".into(),
            id: Uuid::from_u128(11),
        }),
        inners: Some(vec![Inner::default(); 3]),
        ..Options::default()
    });
    // `None` is absent on the wire: the same bytes as a table without the field.
    assert_eq!(Options::default().encode(), Empty {}.encode());
}

#[test]
fn nested_and_deeply_nested_messages_round_trip() {
    round_trip(&Nested::default());
    let leaf = |n: u128| Level3 {
        leaf: Inner {
            name: format!("leaf {n}"),
            id: Uuid::from_u128(n),
        },
        note: "note".into(),
    };
    round_trip(&Nested {
        inner: Inner {
            name: "top".into(),
            id: Uuid::from_u128(1),
        },
        deep: Level1 {
            l2: Level2 {
                l3: Some(leaf(2)),
                l3s: vec![leaf(3), leaf(4), Level3::default()],
            },
            tag: 5,
        },
    });
    let mut tree = Tree {
        value: 0,
        children: vec![],
    };
    for depth in 1..20 {
        tree = Tree {
            value: depth,
            children: vec![tree.clone(), Tree::default()],
        };
    }
    round_trip(&tree);
}

#[test]
fn absent_fields_read_as_defaults() {
    let empty = Empty {}.encode();
    assert_eq!(Scalars::decode(&empty).unwrap(), Scalars::default());
    assert_eq!(Vectors::decode(&empty).unwrap(), Vectors::default());
    assert_eq!(Options::decode(&empty).unwrap(), Options::default());
    assert_eq!(Text::decode(&empty).unwrap(), Text::default());
    assert_eq!(Tree::decode(&empty).unwrap(), Tree::default());
    // Defaults are not written: an all-default table is an empty table.
    assert_eq!(Scalars::default().encode(), empty);
    // A nested message has no default on the wire: its absence is an error.
    assert_eq!(
        Nested::decode(&empty).unwrap_err(),
        DecodeError::Missing("inner")
    );
}

#[test]
fn invalid_buffers_are_errors() {
    assert!(Scalars::decode(&[]).is_err());
    assert!(Scalars::decode(&[1, 2, 3]).is_err());
    assert!(Scalars::decode(&[0xff; 64]).is_err());
    // A string whose bytes are not UTF-8.
    let mut bytes = Text {
        s: "abcd".into(),
        id: Uuid::nil(),
    }
    .encode()
    .to_vec();
    let at = bytes.windows(4).position(|w| w == b"abcd").unwrap();
    bytes[at] = 0xff;
    let e = Text::decode(&bytes).unwrap_err().to_string();
    assert!(
        e.contains("Utf8 error") && e.contains("while verifying table field `s`"),
        "the error names the field: {e}"
    );
    // A scalar field moved out of the buffer: the error names it too.
    let mut bytes = Scalars {
        i64: 7,
        ..Scalars::default()
    }
    .encode()
    .to_vec();
    let root = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let vtable = root - i32::from_le_bytes(bytes[root..root + 4].try_into().unwrap()) as usize;
    // i64 is the 8th field: its vtable entry is at 4 + 2 * 7.
    bytes[vtable + 18..vtable + 20].copy_from_slice(&0xfff8u16.to_le_bytes());
    let e = Scalars::decode(&bytes).unwrap_err().to_string();
    assert!(
        e.contains("while verifying table field `i64`"),
        "the error names the field: {e}"
    );
    // A truncated buffer (its last 3 bytes are padding after the terminator of
    // the last string written, so only shorter prefixes are invalid).
    let full = Nested::default().encode();
    assert_eq!(&full[full.len() - 4..], &[0, 0, 0, 0]);
    for len in 0..full.len() - 3 {
        assert!(
            Nested::decode(&full[..len]).is_err(),
            "prefix of {len} bytes"
        );
    }
    // Over the size limit.
    let big = Vectors {
        bytes: vec![7; 2000],
        ..Vectors::default()
    }
    .encode();
    assert_eq!(
        Vectors::decode_limited(&big, 1000).unwrap_err(),
        DecodeError::TooLarge(big.len())
    );
}

/// The limit is on the buffer's length: a valid buffer of at most `max_size`
/// bytes decodes. (flatbuffers' verifier also bounds the "apparent size", which
/// counts a vtable again for every table sharing it, so it exceeds the length.)
#[test]
fn a_valid_buffer_within_the_limit_decodes() {
    let text = Text {
        s: "abc".into(),
        id: Uuid::nil(),
    }
    .encode();
    assert_eq!(
        Text::decode_limited(&text, text.len()).map(|_| ()),
        Ok(()),
        "a {}-byte buffer with a {}-byte limit",
        text.len(),
        text.len()
    );
    // Many small tables sharing one vtable, under the default 1 MiB limit.
    let many = Vectors {
        inners: vec![Inner::default(); 25_000],
        ..Vectors::default()
    };
    let bytes = many.encode();
    assert!(bytes.len() < 1024 * 1024, "{}", bytes.len());
    assert_eq!(
        Vectors::decode(&bytes).map(|v| v.inners.len()),
        Ok(25_000),
        "a {}-byte buffer under the 1 MiB default limit",
        bytes.len()
    );
}

// ------------------------------------------------------- enums and unions

/// A fieldless enum with explicit discriminants: `ubyte`, 0 is a variant.
#[derive(Message, Debug, Clone, Copy, Default, PartialEq)]
enum Color {
    #[default]
    Red,
    Green = 5,
    Blue,
}

/// Negative values and no zero: `short`, an absent field reads as the lowest.
#[derive(Message, Debug, Clone, Copy, Default, PartialEq)]
enum Level {
    #[default]
    Low = -3,
    High = 7,
    Max = 300,
}

/// The type given with `#[fbs(repr)]`, wider than the values need.
#[derive(Message, Debug, Clone, Copy, Default, PartialEq)]
#[fbs(repr = "uint")]
enum Wide {
    #[default]
    A,
    B,
}

/// The type given with Rust's `#[repr]`; renamed, with a renamed variant.
#[derive(Message, Debug, Clone, Copy, Default, PartialEq)]
#[repr(u16)]
#[fbs(name = "Mood")]
enum Feeling {
    #[default]
    #[fbs(name = "HAPPY")]
    Happy = 1,
    Sad = 2,
}

#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Palette {
    color: Color,
    level: Level,
    wide: Wide,
    feeling: Feeling,
    maybe: Option<Color>,
    maybe_level: Option<Level>,
    colors: Vec<Color>,
    levels: Vec<Level>,
    maybe_colors: Option<Vec<Color>>,
}

/// Only enums: all defaults is an empty table.
#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Enums {
    color: Color,
    level: Level,
    wide: Wide,
    feeling: Feeling,
}

/// Scalars, optional scalars and enums: a table with no offsets in it, decoded
/// without flatbuffers' verifier pass ([`Message::FLAT`]).
#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Flat {
    n: i64,
    small: u8,
    on: bool,
    ratio: f32,
    maybe: Option<u16>,
    level: Level,
    maybe_color: Option<Color>,
    wide: f64,
}

#[test]
fn tables_of_scalars_and_enums_are_flat_and_no_others() {
    const { assert!(Flat::FLAT && Scalars::FLAT && Enums::FLAT && Empty::FLAT) };
    const { assert!(!Text::FLAT && !Palette::FLAT && !Nested::FLAT && !Drawing::FLAT) };
}

/// What flatbuffers' verifier checks beyond bounds, a table of scalars is held
/// to as well: the same buffer moved one byte on (every offset still pointing
/// in bounds, every field misaligned) decodes as nothing.
#[test]
fn a_misaligned_table_of_scalars_is_refused_as_the_verifier_refuses_it() {
    let value = Flat {
        n: -5,
        ratio: 1.5,
        maybe: Some(9),
        level: Level::Max,
        wide: 2.25,
        ..Flat::default()
    };
    let bytes = value.encode();
    assert_eq!(Flat::decode(&bytes), Ok(value));
    let root = u32::from_le_bytes(bytes[..4].try_into().unwrap());
    let mut moved = (root + 1).to_le_bytes().to_vec();
    moved.push(0);
    moved.extend_from_slice(&bytes[4..]);
    let e = Flat::decode(&moved).unwrap_err();
    assert_eq!(
        Err::<Flat, _>(e.clone()),
        framework::message::decode_verified::<Flat>(&moved, 1 << 20)
    );
    assert!(e.to_string().contains("unaligned"), "{e}");
}

#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Circle {
    radius: f32,
}

#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Square {
    side: f32,
    label: String,
}

/// A union of two tables, one of them twice under another name.
#[derive(Message, Debug, Clone, PartialEq)]
enum Shape {
    Circle(Circle),
    Square(Square),
    #[fbs(name = "Dot")]
    Point(Circle),
}

impl Default for Shape {
    fn default() -> Self {
        Shape::Circle(Circle::default())
    }
}

/// A required union, an optional one, and fields around them.
#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Drawing {
    name: String,
    #[fbs(union)]
    shape: Shape,
    #[fbs(union)]
    extra: Option<Shape>,
    tag: u8,
}

/// `Drawing`'s wire layout spelled out: each union as its type and its table.
#[derive(Message, Debug, Clone, Default, PartialEq)]
struct RawDrawing {
    name: String,
    shape_type: u8,
    shape: Option<Square>,
    extra_type: u8,
    extra: Option<Square>,
    tag: u8,
}

/// `Palette`'s first fields as plain integers, to put any value on the wire.
#[derive(Message, Debug, Clone, Default, PartialEq)]
struct RawPalette {
    color: u8,
    level: i16,
    wide: u32,
    feeling: u16,
    maybe: Option<u8>,
    maybe_level: Option<i16>,
    colors: Vec<u8>,
}

/// `Drawing` declared in another order with its ids pinned (a union's id is its
/// value's; its type's is the id before).
#[derive(Message, Debug, Clone, Default, PartialEq)]
#[fbs(name = "Drawing")]
struct DrawingPinned {
    #[fbs(id = 5)]
    tag: u8,
    #[fbs(union, id = 4)]
    extra: Option<Shape>,
    #[fbs(id = 0)]
    name: String,
    #[fbs(union, id = 2)]
    shape: Shape,
}

#[test]
fn enums_round_trip_at_every_variant() {
    let colors = [Color::Red, Color::Green, Color::Blue];
    let levels = [Level::Low, Level::High, Level::Max];
    for (i, (color, level)) in colors.into_iter().zip(levels).enumerate() {
        round_trip(&Palette {
            color,
            level,
            wide: if i % 2 == 0 { Wide::A } else { Wide::B },
            feeling: if i % 2 == 0 {
                Feeling::Sad
            } else {
                Feeling::Happy
            },
            maybe: Some(color),
            maybe_level: Some(level),
            colors: colors.to_vec(),
            levels: vec![level; i],
            maybe_colors: Some(vec![color]),
        });
    }
    round_trip(&Palette::default());
}

#[test]
fn enums_are_stored_as_their_values() {
    let raw = RawPalette::decode(
        &Palette {
            color: Color::Blue,
            level: Level::Max,
            wide: Wide::B,
            feeling: Feeling::Sad,
            maybe: Some(Color::Red),
            maybe_level: None,
            colors: vec![Color::Green, Color::Red],
            ..Palette::default()
        }
        .encode(),
    )
    .unwrap();
    assert_eq!(
        raw,
        RawPalette {
            color: 6,
            level: 300,
            wide: 1,
            feeling: 2,
            maybe: Some(0),
            maybe_level: None,
            colors: vec![5, 0],
        }
    );
}

#[test]
fn absent_enums_read_as_their_default_and_defaults_are_not_written() {
    let empty = Empty {}.encode();
    let enums = Enums::decode(&empty).unwrap();
    // 0 where it is a variant, else the lowest value (flatc's rule).
    assert_eq!(
        enums,
        Enums {
            color: Color::Red,
            level: Level::Low,
            wide: Wide::A,
            feeling: Feeling::Happy,
        }
    );
    assert_eq!(enums.encode(), empty);
    // `Some` of the default is written, and tells itself from `None`.
    let some = Palette {
        maybe: Some(Color::Red),
        maybe_level: Some(Level::Low),
        ..Palette::default()
    };
    round_trip(&some);
    assert_ne!(some.encode(), Palette::default().encode());
}

#[test]
fn a_value_that_is_no_variant_is_an_error() {
    let bad = |raw: RawPalette| Palette::decode(&raw.encode()).unwrap_err();
    let unknown = |ty, value| DecodeError::UnknownVariant { ty, value };
    assert_eq!(
        bad(RawPalette {
            color: 1,
            ..RawPalette::default()
        }),
        unknown("Color", 1)
    );
    assert_eq!(
        bad(RawPalette {
            level: -3,
            feeling: 3,
            ..RawPalette::default()
        }),
        unknown("Mood", 3)
    );
    // 0 is no `Level`: written explicitly, it is an error, not the default.
    assert_eq!(
        bad(RawPalette {
            maybe_level: Some(0),
            level: -3,
            feeling: 1,
            ..RawPalette::default()
        }),
        unknown("Level", 0)
    );
    assert_eq!(
        bad(RawPalette {
            wide: u32::MAX,
            level: -3,
            feeling: 1,
            ..RawPalette::default()
        }),
        unknown("Wide", u32::MAX.into())
    );
    assert_eq!(
        bad(RawPalette {
            colors: vec![0, 5, 6, 7],
            level: -3,
            feeling: 1,
            ..RawPalette::default()
        }),
        unknown("Color", 7)
    );
    assert_eq!(
        bad(RawPalette {
            maybe: Some(255),
            level: -3,
            feeling: 1,
            ..RawPalette::default()
        }),
        unknown("Color", 255)
    );
}

#[test]
fn unions_round_trip_every_member() {
    let circle = Circle { radius: 1.5 };
    let square = Square {
        side: 2.0,
        label: "sq".into(),
    };
    for shape in [
        Shape::Circle(circle.clone()),
        Shape::Square(square.clone()),
        Shape::Point(Circle::default()),
    ] {
        for extra in [None, Some(Shape::Square(square.clone()))] {
            round_trip(&Drawing {
                name: "d".into(),
                shape: shape.clone(),
                extra,
                tag: 9,
            });
        }
    }
}

#[test]
fn a_union_is_its_type_and_its_table() {
    let square = Square {
        side: 3.0,
        label: "s".into(),
    };
    let drawing = Drawing {
        name: "n".into(),
        shape: Shape::Square(square.clone()),
        extra: None,
        tag: 1,
    };
    // Member types count from 1 in declaration order (0 is NONE): Square is 2,
    // and an absent optional union has neither its type nor its table.
    assert_eq!(
        RawDrawing::decode(&drawing.encode()).unwrap(),
        RawDrawing {
            name: "n".into(),
            shape_type: 2,
            shape: Some(square.clone()),
            extra_type: 0,
            extra: None,
            tag: 1,
        }
    );
    let raw = RawDrawing {
        name: "raw".into(),
        shape_type: 2,
        shape: Some(square.clone()),
        extra_type: 3,
        extra: Some(Square::default()),
        tag: 2,
    };
    assert_eq!(
        Drawing::decode(&raw.encode()).unwrap(),
        Drawing {
            name: "raw".into(),
            shape: Shape::Square(square),
            // A `Square` table read as a `Circle` (type 3 is `Dot`): FlatBuffers
            // trusts the type; an all-default table reads as the default.
            extra: Some(Shape::Point(Circle::default())),
            tag: 2,
        }
    );
}

#[test]
fn a_required_union_that_is_absent_is_missing() {
    assert_eq!(
        Drawing::decode(&Empty {}.encode()).unwrap_err(),
        DecodeError::Missing("shape")
    );
    let square = Some(Square::default());
    let raw = |shape_type, extra_type| RawDrawing {
        shape_type,
        shape: square.clone(),
        extra_type,
        extra: square.clone(),
        ..RawDrawing::default()
    };
    // A type that is no member.
    assert_eq!(
        Drawing::decode(&raw(4, 1).encode()).unwrap_err(),
        DecodeError::UnknownVariant {
            ty: "Shape",
            value: 4
        }
    );
    assert_eq!(
        Drawing::decode(&raw(1, 200).encode()).unwrap_err(),
        DecodeError::UnknownVariant {
            ty: "Shape",
            value: 200
        }
    );
    // A table without its type (type 0 is not written): the verifier rejects it.
    let err = Drawing::decode(&raw(1, 0).encode()).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid(_)), "{err:?}");
    // A type without its table.
    let no_table = RawDrawing {
        shape_type: 1,
        ..RawDrawing::default()
    };
    let err = Drawing::decode(&no_table.encode()).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid(_)), "{err:?}");
}

#[test]
fn pinned_union_ids_match_declaration_order_ids() {
    let drawing = Drawing {
        name: "pinned".into(),
        shape: Shape::Circle(Circle { radius: 4.0 }),
        extra: Some(Shape::Point(Circle { radius: 1.0 })),
        tag: 3,
    };
    let pinned = DrawingPinned::decode(&drawing.encode()).unwrap();
    assert_eq!(
        pinned,
        DrawingPinned {
            tag: 3,
            extra: drawing.extra.clone(),
            name: "pinned".into(),
            shape: drawing.shape.clone(),
        }
    );
    assert_eq!(Drawing::decode(&pinned.encode()).unwrap(), drawing);
    assert_eq!(
        Drawing::schema(None)
            .lines()
            .filter(|l| l.contains("(id:"))
            .collect::<Vec<_>>(),
        DrawingPinned::schema(None)
            .lines()
            .filter(|l| l.contains("(id:"))
            .collect::<Vec<_>>()
    );
}

#[test]
fn schema_of_enums_and_unions_is_exact() {
    assert_eq!(
        Palette::schema(None),
        "// Generated from Rust types by framework's #[derive(Message)].\n\
         \n\
         enum Color : ubyte {\n\
         \x20 Red = 0,\n\
         \x20 Green = 5,\n\
         \x20 Blue = 6,\n\
         }\n\
         \n\
         enum Level : short {\n\
         \x20 Low = -3,\n\
         \x20 High = 7,\n\
         \x20 Max = 300,\n\
         }\n\
         \n\
         enum Wide : uint {\n\
         \x20 A = 0,\n\
         \x20 B = 1,\n\
         }\n\
         \n\
         enum Mood : ushort {\n\
         \x20 HAPPY = 1,\n\
         \x20 Sad = 2,\n\
         }\n\
         \n\
         table Palette {\n\
         \x20 color: Color (id: 0);\n\
         \x20 level: Level = Low (id: 1);\n\
         \x20 wide: Wide (id: 2);\n\
         \x20 feeling: Mood = HAPPY (id: 3);\n\
         \x20 maybe: Color = null (id: 4);\n\
         \x20 maybe_level: Level = null (id: 5);\n\
         \x20 colors: [Color] (id: 6);\n\
         \x20 levels: [Level] (id: 7);\n\
         \x20 maybe_colors: [Color] (id: 8);\n\
         }\n\
         \n\
         root_type Palette;\n"
    );
    assert_eq!(
        Drawing::schema(Some("app")),
        "// Generated from Rust types by framework's #[derive(Message)].\n\
         \n\
         namespace app;\n\
         \n\
         table Circle {\n\
         \x20 radius: float (id: 0);\n\
         }\n\
         \n\
         table Square {\n\
         \x20 side: float (id: 0);\n\
         \x20 label: string (id: 1);\n\
         }\n\
         \n\
         union Shape {\n\
         \x20 Circle,\n\
         \x20 Square,\n\
         \x20 Dot: Circle,\n\
         }\n\
         \n\
         table Drawing {\n\
         \x20 name: string (id: 0);\n\
         \x20 shape: Shape (id: 2);\n\
         \x20 extra: Shape (id: 4);\n\
         \x20 tag: ubyte (id: 5);\n\
         }\n\
         \n\
         root_type Drawing;\n"
    );
}

/// What the registry's conflict check compares: each name's own text, an enum's
/// or a union's as a table's.
#[test]
fn an_enum_or_union_describes_itself_under_its_name() {
    use framework::message::{Enum, Union};
    let mut schema = framework::message::Schema::new(None);
    <Feeling as Enum>::describe(&mut schema);
    <Shape as Union>::describe(&mut schema);
    assert_eq!(
        schema.table_text("Mood"),
        Some("enum Mood : ushort {\n  HAPPY = 1,\n  Sad = 2,\n}\n")
    );
    assert!(
        schema
            .table_text("Shape")
            .is_some_and(|t| t.starts_with("union Shape {")),
        "{schema:?}"
    );
    // A union describes its member tables before itself, each once.
    let fbs = schema.to_fbs();
    assert_eq!(fbs.matches("table Circle {").count(), 1, "{fbs}");
    assert!(
        fbs.find("table Square {") < fbs.find("union Shape {"),
        "{fbs}"
    );
}

// ------------------------------------------------- schema evolution

#[derive(Message, Debug, Clone, Default, PartialEq)]
#[fbs(name = "Profile")]
struct ProfileV1 {
    id: u32,
    name: String,
}

/// V1 with fields appended.
#[derive(Message, Debug, Clone, Default, PartialEq)]
#[fbs(name = "Profile")]
struct ProfileV2 {
    id: u32,
    name: String,
    nickname: Option<String>,
    age: Option<u8>,
    tags: Vec<String>,
}

/// V2 with `name` retired: its id stays reserved, it is never written or read.
#[derive(Message, Debug, Clone, Default, PartialEq)]
#[fbs(name = "Profile")]
struct ProfileV3 {
    id: u32,
    #[fbs(deprecated)]
    name: String,
    nickname: Option<String>,
    age: Option<u8>,
    tags: Vec<String>,
}

/// V1's fields declared in another order, with their ids pinned.
#[derive(Message, Debug, Clone, Default, PartialEq)]
#[fbs(name = "Profile")]
struct ProfilePinned {
    #[fbs(id = 1)]
    display_name: String,
    #[fbs(id = 0)]
    number: u32,
}

#[test]
fn old_bytes_decode_into_a_new_struct() {
    let v1 = ProfileV1 {
        id: 7,
        name: "ada".into(),
    };
    assert_eq!(
        ProfileV2::decode(&v1.encode()).unwrap(),
        ProfileV2 {
            id: 7,
            name: "ada".into(),
            nickname: None,
            age: None,
            tags: vec![],
        }
    );
}

#[test]
fn new_bytes_decode_into_an_old_struct() {
    let v2 = ProfileV2 {
        id: 7,
        name: "ada".into(),
        nickname: Some("countess".into()),
        age: Some(36),
        tags: vec!["math".into()],
    };
    assert_eq!(
        ProfileV1::decode(&v2.encode()).unwrap(),
        ProfileV1 {
            id: 7,
            name: "ada".into(),
        }
    );
}

#[test]
fn deprecated_fields_are_never_written_and_read_as_default() {
    let v3 = ProfileV3 {
        id: 1,
        name: "ignored".into(),
        nickname: Some("n".into()),
        age: Some(0),
        tags: vec![],
    };
    let bytes = v3.encode();
    assert!(!bytes.windows(7).any(|w| w == b"ignored"));
    // Readers of the old schema see the retired field as absent.
    let as_v2 = ProfileV2::decode(&bytes).unwrap();
    assert_eq!(as_v2.name, "");
    assert_eq!(as_v2.nickname.as_deref(), Some("n"));
    assert_eq!(as_v2.age, Some(0));
    // Bytes that still carry the field: it is not read.
    let old = ProfileV2 {
        id: 2,
        name: "still sent".into(),
        ..ProfileV2::default()
    };
    let back = ProfileV3::decode(&old.encode()).unwrap();
    assert_eq!(back.name, "");
    assert_eq!(back.id, 2);
}

#[test]
fn pinned_ids_decide_the_wire_layout_not_the_declaration_order() {
    let v1 = ProfileV1 {
        id: 3,
        name: "grace".into(),
    };
    let pinned = ProfilePinned::decode(&v1.encode()).unwrap();
    assert_eq!(
        pinned,
        ProfilePinned {
            display_name: "grace".into(),
            number: 3,
        }
    );
    assert_eq!(ProfileV1::decode(&pinned.encode()).unwrap(), v1);
    // The schema lists fields by id.
    let fbs = ProfilePinned::schema(None);
    let number = fbs.find("number: uint (id: 0);").expect(&fbs);
    let name = fbs.find("display_name: string (id: 1);").expect(&fbs);
    assert!(number < name, "{fbs}");
}

// ----------------------------------------------------------- schema text

#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Point {
    x: i32,
    y: Option<u32>,
    #[fbs(deprecated)]
    z: u8,
    tags: Vec<String>,
}

#[test]
fn schema_of_a_small_struct_is_exact() {
    assert_eq!(
        Point::schema(Some("app")),
        "// Generated from Rust types by framework's #[derive(Message)].\n\
         \n\
         namespace app;\n\
         \n\
         table Point {\n\
         \x20 x: int (id: 0);\n\
         \x20 y: uint = null (id: 1);\n\
         \x20 z: ubyte (id: 2, deprecated);\n\
         \x20 tags: [string] (id: 3);\n\
         }\n\
         \n\
         root_type Point;\n"
    );
    assert_eq!(
        Empty::schema(None),
        "// Generated from Rust types by framework's #[derive(Message)].\n\
         \n\
         table Empty {\n\
         }\n\
         \n\
         root_type Empty;\n"
    );
}

#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Outer {
    first: Inner,
    all: Vec<Inner>,
    other: Other,
    id: Uuid,
}

#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Other {
    inner: Option<Inner>,
    ids: Vec<Uuid>,
}

#[test]
fn schema_lists_dependencies_first_each_once_with_one_uuid_struct() {
    let fbs = Outer::schema(Some("deps"));
    assert_eq!(fbs.matches("struct Uuid {").count(), 1, "{fbs}");
    assert_eq!(fbs.matches("table Inner {").count(), 1, "{fbs}");
    assert_eq!(fbs.matches("table Other {").count(), 1, "{fbs}");
    assert_eq!(fbs.matches("table Outer {").count(), 1, "{fbs}");
    let pos = |s: &str| {
        fbs.find(s)
            .unwrap_or_else(|| panic!("{s} missing in {fbs}"))
    };
    assert!(pos("struct Uuid {") < pos("table Inner {"), "{fbs}");
    assert!(pos("table Inner {") < pos("table Other {"), "{fbs}");
    assert!(pos("table Other {") < pos("table Outer {"), "{fbs}");
    assert!(pos("table Outer {") < pos("root_type Outer;"), "{fbs}");
    assert!(fbs.contains("  ids: [Uuid] (id: 1);"), "{fbs}");
    assert!(fbs.contains("  all: [Inner] (id: 1);"), "{fbs}");
    assert!(fbs.contains("  inner: Inner (id: 0);"), "{fbs}");
    // A schema without UUIDs has no Uuid struct.
    assert!(!Point::schema(None).contains("Uuid"));
    // A recursive type terminates and refers to itself.
    let tree = Tree::schema(None);
    assert_eq!(tree.matches("table Tree {").count(), 1, "{tree}");
    assert!(tree.contains("  children: [Tree] (id: 1);"), "{tree}");
}

#[test]
fn export_schema_refuses_two_versions_of_one_table() {
    // `ProfileV1` and `ProfileV2` are two versions of table `Profile` in one binary
    // (for the evolution tests): an export of everything cannot pick one.
    let err = framework::registry::export_schema(Some("all")).unwrap_err();
    assert_eq!(err.table, "Profile");
    assert!(
        err.first.contains("ProfileV1") && err.second.contains("ProfileV2"),
        "{err}"
    );
}

#[test]
fn a_schema_has_every_table_it_needs_once() {
    let mut schema = framework::message::Schema::new(Some("all"));
    <Scalars as Message>::describe(&mut schema);
    <Vectors as Message>::describe(&mut schema);
    <Options as Message>::describe(&mut schema);
    <Nested as Message>::describe(&mut schema);
    <Tree as Message>::describe(&mut schema);
    <Outer as Message>::describe(&mut schema);
    let fbs = schema.to_fbs();
    assert!(fbs.starts_with("// Generated"), "{fbs}");
    assert!(fbs.contains("namespace all;"), "{fbs}");
    assert!(!fbs.contains("root_type"), "{fbs}");
    for table in [
        "Scalars", "Vectors", "Options", "Inner", "Nested", "Tree", "Outer",
    ] {
        assert_eq!(
            fbs.matches(&format!("table {table} {{")).count(),
            1,
            "{table} in {fbs}"
        );
    }
    assert!(fbs.matches("struct Uuid {").count() <= 1, "{fbs}");
}

/// Rust keywords as field names are written `r#type`; the schema must name the
/// field `type`, as every other language sees it.
#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Keywords {
    r#type: u8,
    r#match: String,
}

#[test]
fn raw_identifiers_are_written_without_their_prefix() {
    round_trip(&Keywords {
        r#type: 1,
        r#match: "m".into(),
    });
    let fbs = Keywords::schema(None);
    assert!(!fbs.contains("r#"), "{fbs}");
    assert!(fbs.contains("  type: ubyte (id: 0);"), "{fbs}");
    assert!(fbs.contains("  match: string (id: 1);"), "{fbs}");
}

// ------------------------------------------------------------- proptests

#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Everything {
    scalars: Scalars,
    vectors: Vectors,
    options: Options,
    tree: Tree,
    s: String,
    id: Uuid,
    palette: Palette,
    drawing: Drawing,
}

/// Any float but `-0.0` (see `negative_zero_keeps_its_sign`), NaN included.
fn f32s() -> impl Strategy<Value = f32> {
    any::<f32>().prop_map(|f| if f == 0.0 { 0.0 } else { f })
}

fn f64s() -> impl Strategy<Value = f64> {
    any::<f64>().prop_map(|f| if f == 0.0 { 0.0 } else { f })
}

fn uuids() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn inners() -> impl Strategy<Value = Inner> {
    (".{0,12}", uuids()).prop_map(|(name, id)| Inner { name, id })
}

fn scalars() -> impl Strategy<Value = Scalars> {
    (
        (any::<bool>(), any::<i8>(), any::<u8>(), any::<i16>()),
        (any::<u16>(), any::<i32>(), any::<u32>(), any::<i64>()),
        (any::<u64>(), f32s(), f64s()),
    )
        .prop_map(
            |((b, i8, u8, i16), (u16, i32, u32, i64), (u64, f32, f64))| Scalars {
                b,
                i8,
                u8,
                i16,
                u16,
                i32,
                u32,
                i64,
                u64,
                f32,
                f64,
            },
        )
}

fn vectors() -> impl Strategy<Value = Vectors> {
    (
        (
            vec(any::<u8>(), 0..40),
            vec(any::<i8>(), 0..8),
            vec(any::<i16>(), 0..8),
            vec(any::<u16>(), 0..8),
            vec(any::<i32>(), 0..8),
        ),
        (
            vec(any::<u32>(), 0..8),
            vec(any::<i64>(), 0..8),
            vec(any::<u64>(), 0..8),
            vec(f32s(), 0..8),
            vec(f64s(), 0..8),
        ),
        (vec(".{0,8}", 0..5), vec(uuids(), 0..4), vec(inners(), 0..4)),
    )
        .prop_map(
            |((bytes, i8, i16, u16, i32), (u32, i64, u64, f32, f64), (strings, uuids, inners))| {
                Vectors {
                    bytes,
                    i8,
                    i16,
                    u16,
                    i32,
                    u32,
                    i64,
                    u64,
                    f32,
                    f64,
                    strings,
                    uuids,
                    inners,
                }
            },
        )
}

fn options() -> impl Strategy<Value = Options> {
    use proptest::option::of;
    (
        (
            of(any::<bool>()),
            of(any::<i8>()),
            of(any::<u8>()),
            of(any::<i16>()),
            of(any::<u16>()),
            of(any::<i32>()),
            of(any::<u32>()),
        ),
        (
            of(any::<i64>()),
            of(any::<u64>()),
            of(f32s()),
            of(f64s()),
            of(".{0,8}"),
            of(vec(any::<u8>(), 0..8)),
        ),
        (
            of(vec(any::<u32>(), 0..4)),
            of(vec(".{0,4}", 0..3)),
            of(uuids()),
            of(vec(uuids(), 0..3)),
            of(inners()),
            of(vec(inners(), 0..3)),
        ),
    )
        .prop_map(
            |(
                (b, i8, u8, i16, u16, i32, u32),
                (i64, u64, f32, f64, s, bytes),
                (u32s, strings, uuid, uuids, inner, inners),
            )| Options {
                b,
                i8,
                u8,
                i16,
                u16,
                i32,
                u32,
                i64,
                u64,
                f32,
                f64,
                s,
                bytes,
                u32s,
                strings,
                uuid,
                uuids,
                inner,
                inners,
            },
        )
}

fn trees() -> impl Strategy<Value = Tree> {
    let leaf = any::<i32>().prop_map(|value| Tree {
        value,
        children: vec![],
    });
    leaf.prop_recursive(4, 24, 4, |inner| {
        (any::<i32>(), vec(inner, 0..4)).prop_map(|(value, children)| Tree { value, children })
    })
}

fn colors() -> impl Strategy<Value = Color> {
    prop_oneof![Just(Color::Red), Just(Color::Green), Just(Color::Blue)]
}

fn levels() -> impl Strategy<Value = Level> {
    prop_oneof![Just(Level::Low), Just(Level::High), Just(Level::Max)]
}

fn palettes() -> impl Strategy<Value = Palette> {
    use proptest::option::of;
    (
        (colors(), levels(), any::<bool>(), any::<bool>()),
        (of(colors()), of(levels())),
        (
            vec(colors(), 0..6),
            vec(levels(), 0..6),
            of(vec(colors(), 0..3)),
        ),
    )
        .prop_map(
            |((color, level, wide, sad), (maybe, maybe_level), (colors, levels, maybe_colors))| {
                Palette {
                    color,
                    level,
                    wide: if wide { Wide::B } else { Wide::A },
                    feeling: if sad { Feeling::Sad } else { Feeling::Happy },
                    maybe,
                    maybe_level,
                    colors,
                    levels,
                    maybe_colors,
                }
            },
        )
}

fn shapes() -> impl Strategy<Value = Shape> {
    prop_oneof![
        f32s().prop_map(|radius| Shape::Circle(Circle { radius })),
        (f32s(), ".{0,8}").prop_map(|(side, label)| Shape::Square(Square { side, label })),
        f32s().prop_map(|radius| Shape::Point(Circle { radius })),
    ]
}

fn drawings() -> impl Strategy<Value = Drawing> {
    (
        ".{0,8}",
        shapes(),
        proptest::option::of(shapes()),
        any::<u8>(),
    )
        .prop_map(|(name, shape, extra, tag)| Drawing {
            name,
            shape,
            extra,
            tag,
        })
}

fn everything() -> impl Strategy<Value = Everything> {
    (
        (scalars(), vectors(), options(), trees()),
        (".{0,16}", uuids(), palettes(), drawings()),
    )
        .prop_map(
            |((scalars, vectors, options, tree), (s, id, palette, drawing))| Everything {
                scalars,
                vectors,
                options,
                tree,
                s,
                id,
                palette,
                drawing,
            },
        )
}

/// Equality that treats NaN as equal to NaN (`Debug` prints every value of a
/// float distinctly, and every NaN as `NaN`).
fn same<M: std::fmt::Debug>(a: &M, b: &M) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// Decodes `bytes` as `M`; when that succeeds, the value must re-encode and decode
/// to itself.
fn decode_never_panics<M: Message + std::fmt::Debug>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(value) = M::decode(bytes) {
        let again = M::decode(&value.encode())
            .map_err(|e| TestCaseError::fail(format!("{value:?} re-encodes badly: {e}")))?;
        prop_assert!(same(&again, &value), "{again:?} != {value:?}");
    }
    Ok(())
}

fn decode_as_every_type(bytes: &[u8]) -> Result<(), TestCaseError> {
    decode_never_panics::<Everything>(bytes)?;
    decode_never_panics::<Scalars>(bytes)?;
    decode_never_panics::<Vectors>(bytes)?;
    decode_never_panics::<Options>(bytes)?;
    decode_never_panics::<Nested>(bytes)?;
    decode_never_panics::<Tree>(bytes)?;
    decode_never_panics::<Text>(bytes)?;
    decode_never_panics::<Palette>(bytes)?;
    decode_never_panics::<Drawing>(bytes)?;
    decode_never_panics::<Empty>(bytes)
}

/// A corruption of an encoded buffer (positions are taken modulo its length).
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Set32 { at: usize, value: u32 },
    Insert { at: usize, byte: u8 },
    Remove { at: usize },
    Truncate { len: usize },
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (any::<usize>(), any::<u32>()).prop_map(|(at, value)| Mutation::Set32 { at, value }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Remove { at }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
    ];
    vec(one, 1..6)
}

fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        let len = bytes.len().max(1);
        match *m {
            Mutation::Flip { at, bit } => {
                if let Some(b) = bytes.get_mut(at % len) {
                    *b ^= 1 << bit;
                }
            }
            Mutation::Set { at, byte } => {
                if let Some(b) = bytes.get_mut(at % len) {
                    *b = byte;
                }
            }
            Mutation::Set32 { at, value } => {
                let at = at % len;
                for (i, b) in value.to_le_bytes().into_iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(at + i) {
                        *slot = b;
                    }
                }
            }
            Mutation::Insert { at, byte } => bytes.insert(at % (bytes.len() + 1), byte),
            Mutation::Remove { at } => {
                if !bytes.is_empty() {
                    bytes.remove(at % len);
                }
            }
            Mutation::Truncate { len: to } => bytes.truncate(to % len),
        }
    }
}

fn flats() -> impl Strategy<Value = Flat> {
    use proptest::option::of;
    (
        (any::<i64>(), any::<u8>(), any::<bool>(), f32s()),
        (of(any::<u16>()), levels(), of(colors()), f64s()),
    )
        .prop_map(
            |((n, small, on, ratio), (maybe, level, maybe_color, wide))| Flat {
                n,
                small,
                on,
                ratio,
                maybe,
                level,
                maybe_color,
                wide,
            },
        )
}

/// The builder's encoding of `m` (what `encode` writes for a message that is
/// not a table of scalars).
fn built<M: Message>(m: &M) -> Vec<u8> {
    let mut fbb = framework::__private::flatbuffers::FlatBufferBuilder::new();
    let root = m.build_table(&mut fbb);
    fbb.finish_minimal(root);
    fbb.finished_data().to_vec()
}

/// A table of scalars written without the builder (`FlatTable`, what `encode`
/// and a handler's typed reply use for them): flatbuffers' verifier accepts it,
/// and it reads as the builder's encoding, field by field (absent and present
/// defaults included: `Some(0)` stays `Some(0)`).
fn writes_as_the_builder<M: Message + std::fmt::Debug>(m: &M) -> Result<(), TestCaseError> {
    let mut table = framework::message::FlatTable::new();
    m.write_flat(&mut table);
    prop_assert!(!table.refused(), "{:?} was refused", m);
    let mut written = Vec::new();
    table.write(&mut written);
    prop_assert_eq!(written.len(), table.len());
    prop_assert_eq!(&written[..], &m.encode()[..]);
    let verified = framework::message::decode_verified::<M>(&written, 1 << 20);
    let builders = framework::message::decode_verified::<M>(&built(m), 1 << 20);
    prop_assert_eq!(format!("{verified:?}"), format!("{builders:?}"));
    prop_assert_eq!(format!("{verified:?}"), format!("Ok({m:?})"));
    Ok(())
}

proptest! {
    #[test]
    fn tables_of_scalars_are_written_without_the_builder_as_the_builder_writes_them(
        flat in flats(),
        scalars in scalars(),
        (color, level) in (colors(), levels()),
    ) {
        writes_as_the_builder(&flat)?;
        writes_as_the_builder(&scalars)?;
        writes_as_the_builder(&Enums { color, level, ..Enums::default() })?;
        writes_as_the_builder(&Empty::default())?;
        writes_as_the_builder(&Flat { maybe: Some(0), maybe_color: Some(Color::default()), ..flat })?;
    }
}

/// 17 scalars: one more than a table written without the builder holds.
#[derive(Message, Debug, Clone, Default, PartialEq)]
struct Seventeen {
    f0: u8,
    f1: u8,
    f2: u8,
    f3: u8,
    f4: u8,
    f5: u8,
    f6: u8,
    f7: u8,
    f8: u8,
    f9: u8,
    f10: u8,
    f11: u8,
    f12: u8,
    f13: u8,
    f14: u8,
    f15: u8,
    f16: u8,
}

#[test]
fn what_a_table_without_the_builder_cannot_hold_is_encoded_with_the_builder() {
    let refused = |m: &dyn Fn(&mut framework::message::FlatTable)| {
        let mut table = framework::message::FlatTable::new();
        m(&mut table);
        table.refused()
    };
    let text = Text {
        s: "hi".into(),
        ..Text::default()
    };
    assert!(refused(&|t| text.write_flat(t)), "a string");
    let many = Seventeen {
        f0: 1,
        f16: 17,
        ..Seventeen::default()
    };
    assert!(!refused(&|t| many.write_flat(t)), "two of seventeen set");
    let all = Seventeen {
        f0: 1,
        f1: 1,
        f2: 1,
        f3: 1,
        f4: 1,
        f5: 1,
        f6: 1,
        f7: 1,
        f8: 1,
        f9: 1,
        f10: 1,
        f11: 1,
        f12: 1,
        f13: 1,
        f14: 1,
        f15: 1,
        f16: 17,
    };
    assert!(refused(&|t| all.write_flat(t)), "seventeen set");
    // Field ids past 125 (a message of more than 126 fields).
    let mut far = framework::message::FlatTable::new();
    far.scalar(4 + 2 * 126, 1u8);
    assert!(far.refused(), "id 126");
    let mut near = framework::message::FlatTable::new();
    near.scalar(4 + 2 * 125, 1u8);
    assert!(!near.refused(), "id 125");
    // Each still encodes (with the builder) and decodes.
    assert_eq!(Seventeen::decode(&all.encode()).unwrap(), all);
    assert_eq!(Seventeen::decode(&many.encode()).unwrap(), many);
}

/// `decode` of a table of scalars (no verifier pass) against the verifier's
/// decision on the same bytes: the same value, or the same error. Compared as
/// `Debug` text, so that a NaN made by a mutation equals itself.
fn decodes_as_verified<M: Message + std::fmt::Debug>(bytes: &[u8]) -> Result<(), TestCaseError> {
    assert!(M::FLAT);
    let fast = format!("{:?}", M::decode(bytes));
    let verified = format!(
        "{:?}",
        framework::message::decode_verified::<M>(bytes, 1 << 20)
    );
    prop_assert_eq!(fast, verified, "{:?}", bytes);
    Ok(())
}

proptest! {
    #[test]
    fn tables_of_scalars_decode_exactly_as_the_verifier_decides(
        flat in flats(),
        scalars in scalars(),
        muts in mutations(),
    ) {
        for mut bytes in [flat.encode().to_vec(), scalars.encode().to_vec()] {
            mutate(&mut bytes, &muts);
            decodes_as_verified::<Flat>(&bytes)?;
            decodes_as_verified::<Scalars>(&bytes)?;
            decodes_as_verified::<Enums>(&bytes)?;
            decodes_as_verified::<Empty>(&bytes)?;
        }
    }

    #[test]
    fn arbitrary_bytes_decode_as_tables_of_scalars_exactly_as_the_verifier_decides(
        bytes in vec(any::<u8>(), 0..96),
    ) {
        decodes_as_verified::<Flat>(&bytes)?;
        decodes_as_verified::<Scalars>(&bytes)?;
    }

    #[test]
    fn encode_then_decode_is_the_identity(value in everything()) {
        let back = Everything::decode(&value.encode())
            .map_err(|e| TestCaseError::fail(format!("{value:?} does not decode: {e}")))?;
        prop_assert!(same(&back, &value), "{back:?} != {value:?}");
    }

    #[test]
    fn enums_and_unions_round_trip(palette in palettes(), drawing in drawings()) {
        let back = Palette::decode(&palette.encode())
            .map_err(|e| TestCaseError::fail(format!("{palette:?} does not decode: {e}")))?;
        prop_assert_eq!(back, palette);
        let back = Drawing::decode(&drawing.encode())
            .map_err(|e| TestCaseError::fail(format!("{drawing:?} does not decode: {e}")))?;
        prop_assert!(same(&back, &drawing), "{back:?} != {drawing:?}");
    }

    #[test]
    fn decoding_mutated_unions_never_panics(drawing in drawings(), muts in mutations()) {
        let mut bytes = drawing.encode().to_vec();
        mutate(&mut bytes, &muts);
        decode_as_every_type(&bytes)?;
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in vec(any::<u8>(), 0..512)) {
        decode_as_every_type(&bytes)?;
    }

    #[test]
    fn decoding_mutated_encodings_never_panics(value in everything(), muts in mutations()) {
        let mut bytes = value.encode().to_vec();
        mutate(&mut bytes, &muts);
        decode_as_every_type(&bytes)?;
    }

    #[test]
    fn decoding_mutated_nested_encodings_never_panics(tree in trees(), muts in mutations()) {
        let mut bytes = tree.encode().to_vec();
        mutate(&mut bytes, &muts);
        decode_as_every_type(&bytes)?;
    }
}
