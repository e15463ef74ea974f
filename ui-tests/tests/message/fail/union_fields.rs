//! A union field takes two ids (its type's at id - 1, its value's at id), so it is
//! marked #[fbs(union)]; it cannot be a vector element.

#[derive(framework::Message)]
struct Table {
    x: u32,
}

#[derive(framework::Message)]
enum Shape {
    Table(Table),
}

#[derive(framework::Message)]
struct Unmarked {
    shape: Shape,
}

#[derive(framework::Message)]
struct MarkedScalar {
    #[fbs(union)]
    x: u32,
}

#[derive(framework::Message)]
struct IdZero {
    #[fbs(union, id = 0)]
    shape: Shape,
}

#[derive(framework::Message)]
struct Vector {
    shapes: Vec<Shape>,
}

#[derive(framework::Message)]
struct MarkWithValue {
    #[fbs(union = true)]
    shape: Shape,
}

fn main() {}
