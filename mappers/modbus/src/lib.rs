//! Modbus mapper (work in progress).
