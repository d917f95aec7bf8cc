//! Benchmark runner (work in progress).
