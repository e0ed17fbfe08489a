//! Command routing: which key decides the slot of a command. (STUB: being written.)

use crate::cmd::Cmd;
use crate::error::Result;
use crate::slot::Slot;

/// Where a command must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The primary of this slot.
    Slot(Slot),
    /// Any node will do (keyless commands such as `PING`, `INFO`, `TIME`).
    AnyNode,
}

/// Routes one command: the slot of its keys, `AnyNode` when it has none, or a `CrossSlot`
/// error when its keys live in different slots.
pub fn route_command(cmd: &Cmd) -> Result<Route> {
    let _ = cmd;
    todo!()
}
