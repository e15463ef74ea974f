//! Tuple and unit structs have no field names for the schema; generic structs
//! have no single schema.

#[derive(framework::Message)]
struct Tuple(u32, String);

#[derive(framework::Message)]
struct Unit;

#[derive(framework::Message)]
struct Generic<T> {
    value: T,
}

fn main() {}
