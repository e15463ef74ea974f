//! Two versions of one union (one more member) under one name are refused by the
//! schema export; one union linked once exports once.

#[derive(framework::Message)]
#[allow(dead_code)]
struct A {
    a: u32,
}

#[derive(framework::Message)]
#[allow(dead_code)]
struct B {
    b: u32,
}

#[derive(framework::Message)]
#[allow(dead_code)]
enum Choice {
    A(A),
}

#[derive(framework::Message)]
#[fbs(name = "Choice")]
#[allow(dead_code)]
enum ChoiceV2 {
    A(A),
    B(B),
}

fn main() {
    let err = framework::registry::export_schema(None).unwrap_err();
    assert_eq!(err.table, "Choice");
    assert!(
        err.first.contains("`Choice` at") && err.second.contains("`ChoiceV2` at"),
        "{err}"
    );
}
