//! Malformed `#[fbs(...)]` attributes.

#[derive(framework::Message)]
#[fbs(name = 5, namespace = "x")]
struct OnStruct {
    a: u32,
}

#[derive(framework::Message)]
struct OnFields {
    #[fbs(id = "0")]
    a: u32,
    #[fbs(idd = 1)]
    b: u32,
    #[fbs]
    c: u32,
}

fn main() {}
