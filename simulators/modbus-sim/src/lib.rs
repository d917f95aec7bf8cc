//! Modbus device simulator (work in progress).
