//! Enums and unions share one namespace with tables in a schema: the export
//! refuses two different definitions under one name, naming both, as for tables.

#[derive(framework::Message)]
#[allow(dead_code)]
struct Color {
    value: u32,
}

#[derive(framework::Message)]
#[fbs(name = "Color")]
#[allow(dead_code)]
enum Paint {
    Red,
    Blue,
}

fn main() {
    let err = framework::registry::export_schema(None).unwrap_err();
    assert_eq!(err.table, "Color");
    let both = format!("{} / {}", err.first, err.second);
    assert!(both.contains("`Color` at") && both.contains("`Paint` at"), "{err}");
}
