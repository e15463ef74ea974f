//! Listener values: a string that is no address is refused at the string; a value
//! of a type that is no address is a type error at the value.

mod not_an_address {
    framework::main!(websocket = "localhost:80");
}

mod out_of_range {
    framework::main!(service = 70000);
}

mod wrong_type {
    framework::main!(websocket = 8081.5);
}

fn main() {}
