//! The one integration-test binary: every module below talks to real parts.
mod sim;
