//! Fieldless enums (every way to choose their type) and unions (required and
//! optional, with renamed members and pinned ids) as fields; they round-trip and
//! export their schema.

use framework::Message as _;

#[derive(framework::Message, Debug, Clone, Copy, Default, PartialEq)]
enum Auto {
    #[default]
    A,
    B = 10,
}

#[derive(framework::Message, Debug, Clone, Copy, Default, PartialEq)]
#[fbs(repr = "long", name = "Wide")]
enum Given {
    #[default]
    #[fbs(name = "MIN")]
    Min = -5,
    Max = 5,
}

#[derive(framework::Message, Debug, Clone, Copy, Default, PartialEq)]
#[repr(u16)]
enum Rust {
    #[default]
    One = 1,
    r#Two = 2,
}

#[derive(framework::Message, Debug, Default, PartialEq)]
struct Circle {
    r: f32,
}

#[derive(framework::Message, Debug, Default, PartialEq)]
#[fbs(name = "Sq")]
struct Square {
    side: f32,
}

#[derive(framework::Message, Debug, PartialEq)]
enum Shape {
    Circle(Circle),
    Square(Square),
    #[fbs(name = "Big")]
    Large(Circle),
}

#[derive(framework::Message, Debug, PartialEq)]
struct Draw {
    auto: Auto,
    given: Given,
    rust: Rust,
    maybe: Option<Auto>,
    all: Vec<Given>,
    #[fbs(union)]
    shape: Shape,
    #[fbs(union, id = 8)]
    extra: Option<Shape>,
    #[fbs(id = 9)]
    name: String,
}

fn main() {
    let draw = Draw {
        auto: Auto::B,
        given: Given::Max,
        rust: Rust::Two,
        maybe: Some(Auto::A),
        all: vec![Given::Min, Given::Max],
        shape: Shape::Large(Circle { r: 2.0 }),
        extra: Some(Shape::Square(Square { side: 1.0 })),
        name: "d".into(),
    };
    assert_eq!(Draw::decode(&draw.encode()).unwrap(), draw);
    let fbs = Draw::schema(None);
    for line in [
        "enum Auto : ubyte {\n  A = 0,\n  B = 10,\n}\n",
        "enum Wide : long {\n  MIN = -5,\n  Max = 5,\n}\n",
        "enum Rust : ushort {\n  One = 1,\n  Two = 2,\n}\n",
        "union Shape {\n  Circle,\n  Square: Sq,\n  Big: Circle,\n}\n",
        "  given: Wide = MIN (id: 1);\n",
        "  rust: Rust = One (id: 2);\n",
        "  shape: Shape (id: 6);\n",
        "  extra: Shape (id: 8);\n",
        "  name: string (id: 9);\n",
    ] {
        assert!(fbs.contains(line), "{line} in {fbs}");
    }
}
