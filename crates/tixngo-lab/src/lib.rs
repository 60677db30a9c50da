//! tixngo-lab: the tools around the bridge, never shipped in its image. `bench` measures it
//! against a bare lapin + reqwest baseline, `chaos` proves it loses and duplicates nothing while
//! things break, `demo` runs the whole system in one process. Each uses the bridge as a library
//! (or starts `tixngo-bridge` processes) and the TIXnGO simulator crate.

pub mod bench;
pub mod chaos;
pub mod cli;
pub mod demo;
