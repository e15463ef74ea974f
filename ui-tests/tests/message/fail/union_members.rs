//! A union's members are tables: #[derive(Message)] structs, each at most once
//! per name, numbered by declaration.

#[derive(framework::Message)]
struct Table {
    x: u32,
}

struct Plain;

#[derive(framework::Message)]
enum Fieldless {
    A,
}

/// Caught by syntax: no table, whatever it is.
#[derive(framework::Message)]
enum NoTables {
    S(String),
    N(u32),
    V(Vec<Table>),
    O(Option<Table>),
    R(&'static Table),
}

/// Caught by the type checker: not a `Message`.
#[derive(framework::Message)]
enum NotMessages {
    P(Plain),
    F(Fieldless),
}

#[derive(framework::Message)]
#[fbs(repr = "ubyte")]
enum WithRepr {
    A(Table),
}

#[derive(framework::Message)]
#[repr(u8)]
enum WithDiscriminant {
    A(Table) = 1,
}

#[derive(framework::Message)]
enum Reserved {
    #[fbs(name = "NONE")]
    A(Table),
}

fn main() {
    let _ = Plain;
}
