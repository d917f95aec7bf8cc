//! Fake Kubernetes API server (work in progress).
