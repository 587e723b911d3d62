//! Integration tests of `kasmina-isolation`.
//!
//! The tensor tests are written once, as functions over a `&Device` in `cases`, and instantiated
//! here for the CPU (always) and for CUDA device 0 (with `--features cuda`).
#![allow(clippy::unwrap_used)] // Tests may unwrap (the cases are plain functions, not `#[test]`s).

mod alpha;
mod cases;
mod fused;
mod modes;
mod schedule;

macro_rules! on_devices {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod cpu {
            $(
                #[test]
                fn $name() -> anyhow::Result<()> {
                    super::$module::$name(&candle_core::Device::Cpu)
                }
            )*
        }

        #[cfg(feature = "cuda")]
        mod cuda {
            $(
                #[test]
                fn $name() -> anyhow::Result<()> {
                    super::$module::$name(&candle_core::Device::new_cuda(0)?)
                }
            )*
        }
    };
}

on_devices!(
    cases::detached_input_is_clean,
    cases::monitored_stages_are_clean_with_output_probe,
    cases::shared_parameter_is_a_violation_naming_it,
    cases::undetached_input_is_a_violation,
    cases::training_keeps_host_gradients_and_trains_the_seed,
    cases::blending_keeps_the_host_gradient_and_scales_the_seed_gradient,
    cases::blend_clamps_alpha,
    cases::nan_seed_output_is_reported,
    cases::stages_outside_d6_are_not_checked,
    cases::sampling_checks_every_nth_step,
    cases::slot_forward_follows_the_mode_table,
    cases::fossilized_seed_reads_the_undetached_host,
    cases::bad_shapes_are_typed_errors,
    cases::measure_then_conclude_is_check,
    modes::training_host_gradients_are_bit_identical,
    modes::blending_host_gradient_is_the_identity,
    modes::fossil_scales_the_kernel_path_into_the_host,
    modes::blend_out_freezes_the_seed,
    modes::the_probe_reaches_no_host_variable_before_fossilized,
);
