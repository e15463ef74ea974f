//! Fuzz body `message_decode`: untrusted bytes decoded as derived messages of every
//! field kind (scalars, options, strings, byte and scalar vectors, UUIDs, nested and
//! recursive tables, vectors of tables, enums, unions). Decoding returns `Ok` or
//! `Err`, never panics; an `Ok` value re-encodes to bytes that decode to the same
//! value (compared with `==`, or by `Debug` text where a NaN makes `==` false).
//!
//! Shared by the cargo-fuzz target (`fuzz/fuzz_targets/message_decode.rs`) and the
//! corpus replay test (`tests/fuzz_corpus.rs`), which include this file by path.

use framework::Message;
use uuid::Uuid;

#[derive(Message, Debug, Clone, Default, PartialEq)]
pub struct Scalars {
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
pub struct Vectors {
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
pub struct Options {
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
pub struct Inner {
    name: String,
    id: Uuid,
}

#[derive(Message, Debug, Clone, Default, PartialEq)]
pub struct Nested {
    inner: Inner,
    deep: Level1,
}

#[derive(Message, Debug, Clone, Default, PartialEq)]
pub struct Level1 {
    l2: Level2,
    tag: u8,
}

#[derive(Message, Debug, Clone, Default, PartialEq)]
pub struct Level2 {
    l3: Option<Level3>,
    l3s: Vec<Level3>,
}

#[derive(Message, Debug, Clone, Default, PartialEq)]
pub struct Level3 {
    leaf: Inner,
    note: String,
}

/// Recursive through a vector.
#[derive(Message, Debug, Clone, Default, PartialEq)]
pub struct Tree {
    value: i32,
    children: Vec<Tree>,
}

#[derive(Message, Debug, Clone, Default, PartialEq)]
pub struct Empty {}

/// `ubyte`, 0 is a variant.
#[derive(Message, Debug, Clone, Copy, Default, PartialEq)]
pub enum Color {
    #[default]
    Red,
    Green = 5,
    Blue,
}

/// `short`, negative values, no zero.
#[derive(Message, Debug, Clone, Copy, Default, PartialEq)]
pub enum Level {
    #[default]
    Low = -3,
    High = 7,
    Max = 300,
}

#[derive(Message, Debug, Clone, Copy, Default, PartialEq)]
#[fbs(repr = "uint")]
pub enum Wide {
    #[default]
    A,
    B,
}

#[derive(Message, Debug, Clone, Default, PartialEq)]
pub struct Palette {
    color: Color,
    level: Level,
    wide: Wide,
    maybe: Option<Color>,
    maybe_level: Option<Level>,
    colors: Vec<Color>,
    levels: Vec<Level>,
    maybe_colors: Option<Vec<Color>>,
}

#[derive(Message, Debug, Clone, Default, PartialEq)]
pub struct Circle {
    radius: f32,
}

#[derive(Message, Debug, Clone, Default, PartialEq)]
pub struct Square {
    side: f32,
    label: String,
}

/// A union of two tables, one of them twice under another name.
#[derive(Message, Debug, Clone, PartialEq)]
pub enum Shape {
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
pub struct Drawing {
    name: String,
    #[fbs(union)]
    shape: Shape,
    #[fbs(union)]
    extra: Option<Shape>,
    tag: u8,
    palette: Option<Palette>,
}

/// Decodes `data` as `T` with the default limit, and within a small limit;
/// checks the round trip of what decodes.
fn check<T: Message + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let small = T::decode_limited(data, 64);
    let decoded = T::decode(data);
    if data.len() > 64 {
        assert!(small.is_err(), "over the limit: {small:?}");
    }
    // A larger limit accepts whatever a smaller one does, as the same value.
    if let (Ok(s), Ok(d)) = (&small, &decoded) {
        assert_eq!(format!("{s:?}"), format!("{d:?}"));
    } else {
        assert!(small.is_err() || decoded.is_ok(), "{small:?} / {decoded:?}");
    }
    let Ok(value) = decoded else { return };
    let encoded = value.encode();
    if encoded.len() > framework::config::DEFAULT_MAX_MESSAGE_SIZE {
        // Shared (DAG) input expanded past the limit: refusing it again is right.
        return;
    }
    let again = T::decode(&encoded).expect("an encoded value decodes");
    if again != value {
        // Only a NaN (never equal to itself) may make `==` false.
        assert_eq!(format!("{again:?}"), format!("{value:?}"));
        assert_eq!(again.encode(), encoded, "re-encoding is stable");
    }
}

/// The fuzz body: `data` as every message type.
pub fn run(data: &[u8]) {
    check::<Scalars>(data);
    check::<Vectors>(data);
    check::<Options>(data);
    check::<Inner>(data);
    check::<Nested>(data);
    check::<Tree>(data);
    check::<Empty>(data);
    check::<Palette>(data);
    check::<Drawing>(data);
}

/// Seed inputs: an encoded value of each type.
pub fn seeds() -> Vec<Vec<u8>> {
    let inner = Inner {
        name: "ada".into(),
        id: Uuid::from_u128(7),
    };
    let l3 = Level3 {
        leaf: inner.clone(),
        note: "n".into(),
    };
    let palette = Palette {
        color: Color::Green,
        level: Level::Max,
        wide: Wide::B,
        maybe: Some(Color::Blue),
        maybe_level: Some(Level::Low),
        colors: vec![Color::Red, Color::Blue],
        levels: vec![Level::High],
        maybe_colors: Some(vec![Color::Green]),
    };
    vec![
        Scalars {
            b: true,
            i8: -1,
            u8: 2,
            i16: -3,
            u16: 4,
            i32: -5,
            u32: 6,
            i64: -7,
            u64: 8,
            f32: 1.5,
            f64: -2.5,
        }
        .encode()
        .to_vec(),
        Vectors {
            bytes: vec![1, 2, 3],
            i8: vec![-1],
            i16: vec![-2, 2],
            u16: vec![3],
            i32: vec![4],
            u32: vec![5],
            i64: vec![6],
            u64: vec![7],
            f32: vec![0.5],
            f64: vec![0.25],
            strings: vec!["a".into(), "bc".into()],
            uuids: vec![Uuid::from_u128(1)],
            inners: vec![inner.clone()],
        }
        .encode()
        .to_vec(),
        Options {
            b: Some(false),
            i32: Some(0),
            s: Some("s".into()),
            bytes: Some(vec![]),
            u32s: Some(vec![9]),
            strings: Some(vec!["x".into()]),
            uuid: Some(Uuid::from_u128(2)),
            uuids: Some(vec![]),
            inner: Some(inner.clone()),
            inners: Some(vec![inner.clone()]),
            ..Options::default()
        }
        .encode()
        .to_vec(),
        Nested {
            inner: inner.clone(),
            deep: Level1 {
                l2: Level2 {
                    l3: Some(l3.clone()),
                    l3s: vec![l3.clone(), l3],
                },
                tag: 9,
            },
        }
        .encode()
        .to_vec(),
        Tree {
            value: 1,
            children: vec![
                Tree {
                    value: 2,
                    children: vec![Tree::default()],
                },
                Tree::default(),
            ],
        }
        .encode()
        .to_vec(),
        Empty {}.encode().to_vec(),
        palette.encode().to_vec(),
        Drawing {
            name: "d".into(),
            shape: Shape::Square(Square {
                side: 2.0,
                label: "sq".into(),
            }),
            extra: Some(Shape::Point(Circle { radius: 1.0 })),
            tag: 3,
            palette: Some(palette),
        }
        .encode()
        .to_vec(),
    ]
}
