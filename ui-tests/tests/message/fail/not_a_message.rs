//! A field whose type is not a message (nor another supported type): exactly one
//! error per bad field, at the field's type.

struct Plain {
    a: u32,
}

#[derive(framework::Message)]
struct Outer {
    plain: Plain,
    plains: Vec<Plain>,
    duration: Option<std::time::Duration>,
}

fn main() {
    let _ = Plain { a: 0 }.a;
}
