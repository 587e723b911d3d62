//! Integration tests of the `kasmina` binary: `demo` on the committed datasets, `serve` driven
//! by the Rust tonic client, and the `sign` / `send` commands.
#![allow(clippy::unwrap_used)] // Tests may unwrap (helpers included).

mod checkpoint;
mod demo;
mod serve;
mod sign;

use std::process::Command;

/// The secret every test signs with (key id `default`).
pub(crate) const SECRET: &str = "kasmina-cli-it-secret";

/// The `kasmina` binary with a clean key environment and `ESPER_LEYLINE_SECRET` set.
pub(crate) fn kasmina() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kasmina"));
    cmd.env_remove("ESPER_LEYLINE_KEYS").env_remove("ESPER_LEYLINE_KEY_FILE").env("ESPER_LEYLINE_SECRET", SECRET);
    cmd
}
