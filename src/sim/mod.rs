//! Built-in TIXnGO simulator (see docs/tixngo-api.md).
