//! Shared helpers for Strata integration tests.
