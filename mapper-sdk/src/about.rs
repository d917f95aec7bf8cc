//! The name and version a mapper binary shows in `--help` and `--version`.

/// Who a mapper binary is, for `--version` and `--help`: build it with [`about!`](crate::about!) in
/// the binary's crate, so the binary's own package name and version are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct About {
    /// The binary's name, e.g. `modbus-mapper`.
    pub name: &'static str,
    /// Its version, e.g. `0.1.0`.
    pub version: &'static str,
}

impl About {
    /// The SDK itself (what [`crate::main`] shows).
    pub const SDK: About = About {
        name: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
    };
}

impl Default for About {
    fn default() -> Self {
        Self::SDK
    }
}

/// The [`About`] of the crate that invokes it (its `CARGO_PKG_NAME` and
/// `CARGO_PKG_VERSION`): `mapper_sdk::main_with(driver, mapper_sdk::about!())`.
#[macro_export]
macro_rules! about {
    () => {
        $crate::about::About {
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
        }
    };
}
