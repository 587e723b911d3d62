//! Integration tests of `kasmina-isolation`.
//!
//! The tensor tests are written once, as functions over a `&Device` in `cases`, and instantiated
//! here for the CPU (always) and for CUDA device 0 (with `--features cuda`).
#![allow(clippy::unwrap_used)] // Tests may unwrap (the cases are plain functions, not `#[test]`s).

mod cases;
mod schedule;

macro_rules! on_devices {
    ($($name:ident),* $(,)?) => {
        mod cpu {
            $(
                #[test]
                fn $name() -> anyhow::Result<()> {
                    super::cases::$name(&candle_core::Device::Cpu)
                }
            )*
        }

        #[cfg(feature = "cuda")]
        mod cuda {
            $(
                #[test]
                fn $name() -> anyhow::Result<()> {
                    super::cases::$name(&candle_core::Device::new_cuda(0)?)
                }
            )*
        }
    };
}

on_devices!(
    detached_input_is_clean,
    monitored_stages_are_clean_with_output_probe,
    shared_parameter_is_a_violation_naming_it,
    undetached_input_is_a_violation,
    training_keeps_host_gradients_and_trains_the_seed,
    blending_detaches_host_and_scales_seed_gradient,
    blend_clamps_alpha,
    nan_seed_output_is_reported,
    stages_outside_d6_are_not_checked,
    sampling_checks_every_nth_step,
    slot_output_follows_the_stage_table,
    fossilized_seed_reads_the_undetached_host,
    bad_shapes_are_typed_errors,
);
