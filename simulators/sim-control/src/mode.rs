//! What the simulators' `POST /faults` bodies share.

use serde::{Deserialize, Serialize};

/// How `POST /faults` combines the sent faults with the active ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    /// The target's faults become exactly the sent ones (`{}` = healthy).
    #[default]
    Replace,
    /// The sent faults are added: a sent setting replaces the same kind,
    /// lists accumulate, nothing is turned off.
    Add,
}
