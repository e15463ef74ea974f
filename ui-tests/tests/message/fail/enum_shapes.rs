//! An enum deriving Message is fieldless (a FlatBuffers enum) or holds one table
//! in every variant (a FlatBuffers union); anything else is an error at the
//! variant.

#[derive(framework::Message)]
struct Table {
    x: u32,
}

#[derive(framework::Message)]
enum Empty {}

#[derive(framework::Message)]
enum Mixed {
    A(Table),
    B,
}

#[derive(framework::Message)]
enum Named {
    A { table: Table },
}

#[derive(framework::Message)]
enum Two {
    A(Table, Table),
}

#[derive(framework::Message)]
enum Generic<T> {
    A(T),
}

fn main() {}
