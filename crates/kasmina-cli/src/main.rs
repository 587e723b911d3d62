//! `kasmina`: the command-line front end of the Kasmina runtime.
//!
//! Layer L3 (a binary above `kasmina-runtime`). Subcommands:
//! - `demo`: a host network (an MLP, a CNN on handwritten digits or a byte-level transformer on
//!   a novel: `--task`) trains on a task it can only partly solve; a built-in controller
//!   (playing Tamiyo) sends signed commands; one seed is fossilized and improves accuracy, a
//!   deliberately broken one walks the failure path; writes telemetry, states and a plot.
//! - `serve`: the same training, serving the `KasminaControl` gRPC service.
//! - `sign` / `send`: build, sign and print or send an `AdaptationCommand`.

mod bus;
mod checkpoint;
mod cmd;
mod controller;
mod data;
mod demo;
mod plot;
mod serve;
mod session;
mod soak;

use clap::{Parser, Subcommand};

/// Kasmina: seed execution for morphogenetic training.
#[derive(Debug, Parser)]
#[command(name = "kasmina", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a host network, grow seeds in it under signed commands, show what happened.
    Demo(demo::DemoArgs),
    /// Train and serve the KasminaControl gRPC service.
    Serve(serve::ServeArgs),
    /// Build and sign an AdaptationCommand; print it as a SignedCommand.
    Sign(cmd::SignArgs),
    /// Build, sign and send an AdaptationCommand to a running `kasmina serve`.
    Send(cmd::SendArgs),
    /// Soak the control plane under mixed signed, replayed, stale and forged commands while
    /// training runs (`cargo xtask soak`).
    #[command(hide = true)]
    Soak(soak::SoakArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Sign(args) => cmd::sign(args),
        Command::Send(args) => cmd::send(args),
        Command::Soak(args) => soak::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<checkpoint::Halted>().is_some() => {
            eprintln!("kasmina: {e}");
            std::process::ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
