//! Fixtures shared by the criterion benches of the Kasmina workspace.
//!
//! Layer L3: may depend on every workspace crate. The fixtures mirror the ones Esper's Python
//! prototype was measured on (`shared/perf/python-prototype.md`), so figures compare like with
//! like. Run the benches with `cargo xtask bench`.

pub mod extras;
pub mod fixtures;
pub mod host_rigs;
pub mod read_all;
pub mod rigs;
pub mod threads;
