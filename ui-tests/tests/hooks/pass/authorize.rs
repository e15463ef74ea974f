//! `#[authorize]`, sync and async, with every kind of return and a typed message.

use framework::dispatch::authorize::Attempt;
use framework::node::{Action, Denied};
use framework::prelude::*;

#[derive(framework::Message)]
struct Move {
    x: i32,
}

struct Board(i32);

#[authorize]
fn anyone() -> bool {
    true
}

#[authorize]
fn no_broadcast(attempt: Attempt, who: Option<Identity>) -> Result<(), Denied> {
    match (attempt.action(), who) {
        (Action::Broadcast, None) => Err(Denied::Unauthenticated),
        _ => Ok(()),
    }
}

#[authorize]
async fn on_the_board(attempt: Attempt, State(board): State<Board>, m: Option<Body>) -> Result<(), HandlerError> {
    let _ = (attempt.channel(), m.map(|b| b.0.len()));
    if board.0 >= 0 { Ok(()) } else { Err(HandlerError::new(ErrorCode::Forbidden, "off the board")) }
}

fn typed(m: Move) -> bool {
    m.x >= 0
}

fn main() {
    let _ = App::new().with_registered().with_state(Board(8)).authorize(typed);
}
