//! A derived message with every supported field type, pinned and deprecated ids,
//! a renamed table, nesting and recursion; it round-trips and exports its schema.

use framework::Message as _;
use uuid::Uuid;

#[derive(framework::Message, Debug, Default, PartialEq)]
struct Inner {
    name: String,
}

#[derive(framework::Message, Debug, PartialEq)]
#[fbs(name = "Everything")]
struct All {
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
    s: String,
    bytes: Vec<u8>,
    v_i8: Vec<i8>,
    v_u16: Vec<u16>,
    v_i32: Vec<i32>,
    v_u64: Vec<u64>,
    v_f32: Vec<f32>,
    v_f64: Vec<f64>,
    strings: Vec<String>,
    uuid: Uuid,
    uuids: Vec<Uuid>,
    inner: Inner,
    inners: Vec<Inner>,
    o_u32: Option<u32>,
    o_bool: Option<bool>,
    o_s: Option<String>,
    o_bytes: Option<Vec<u8>>,
    o_uuid: Option<Uuid>,
    o_inner: Option<Inner>,
    o_inners: Option<Vec<Inner>>,
    #[fbs(deprecated)]
    retired: u32,
    #[fbs(deprecated)]
    retired_inner: Inner,
}

/// Pinned ids, declared out of order.
#[derive(framework::Message, Debug, PartialEq)]
struct Pinned {
    #[fbs(id = 1)]
    second: u8,
    #[fbs(id = 0)]
    first: String,
    #[fbs(id = 2, deprecated)]
    third: u16,
}

/// A recursive type (through a vector).
#[derive(framework::Message, Debug, PartialEq)]
struct Tree {
    value: u32,
    children: Vec<Tree>,
}

/// An empty table.
#[derive(framework::Message, Debug, PartialEq)]
struct Empty {}

fn main() {
    let all = All {
        b: true,
        i8: -1,
        u8: 1,
        i16: -2,
        u16: 2,
        i32: -3,
        u32: 3,
        i64: -4,
        u64: 4,
        f32: 0.5,
        f64: 0.25,
        s: "s".into(),
        bytes: vec![1, 2],
        v_i8: vec![-1],
        v_u16: vec![2],
        v_i32: vec![-3],
        v_u64: vec![4],
        v_f32: vec![0.5],
        v_f64: vec![0.25],
        strings: vec!["a".into()],
        uuid: Uuid::from_u128(1),
        uuids: vec![Uuid::from_u128(2)],
        inner: Inner { name: "i".into() },
        inners: vec![Inner { name: "j".into() }],
        o_u32: Some(0),
        o_bool: Some(false),
        o_s: None,
        o_bytes: Some(vec![]),
        o_uuid: Some(Uuid::nil()),
        o_inner: None,
        o_inners: Some(vec![]),
        retired: 0,
        retired_inner: Inner::default(),
    };
    assert_eq!(All::decode(&all.encode()).unwrap(), all);
    assert!(All::schema(None).contains("table Everything {"));
    let pinned = Pinned {
        second: 2,
        first: "1".into(),
        third: 0,
    };
    assert_eq!(Pinned::decode(&pinned.encode()).unwrap(), pinned);
    let tree = Tree {
        value: 1,
        children: vec![Tree {
            value: 2,
            children: vec![],
        }],
    };
    assert_eq!(Tree::decode(&tree.encode()).unwrap(), tree);
    assert_eq!(Empty::decode(&Empty {}.encode()).unwrap(), Empty {});
}
