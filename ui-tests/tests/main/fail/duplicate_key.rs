//! A key given twice.

framework::main!(websocket = 1, websocket = 2);
