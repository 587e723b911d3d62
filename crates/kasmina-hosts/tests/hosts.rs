//! The reference hosts as a trainer uses them: built for the shape of their data (or refused
//! with a typed error), their slots declared with the right layouts, and Kasmina's slots, while
//! dormant, leaving the forward bit for bit what the bare host computes.
#![allow(clippy::unwrap_used, missing_docs)]

use candle_core::{DType, Device, Tensor};
use kasmina_hosts::{CONTEXT, HostError, Input, Model, Task, cnn, mlp, transformer};
use kasmina_runtime::blueprint::builtin;
use kasmina_runtime::{Kasmina, Layout};

const DIGITS: Input = Input::Features { features: cnn::PIXELS, classes: 10 };
const BYTES: Input = Input::Tokens { context: CONTEXT, vocab: 256 };
const TABLE: Input = Input::Features { features: 8, classes: 4 };

fn input_for(task: Task) -> Input {
    match task {
        Task::Mlp => TABLE,
        Task::Cnn => DIGITS,
        Task::Transformer => BYTES,
    }
}

/// A batch of 3 inputs of `task`'s kind: feature rows, or byte windows.
fn batch(task: Task) -> Tensor {
    match task {
        Task::Mlp => Tensor::randn(0f32, 1.0, (3, 8), &Device::Cpu).unwrap(),
        Task::Cnn => Tensor::rand(0f32, 1.0, (3, cnn::PIXELS), &Device::Cpu).unwrap(),
        Task::Transformer => {
            let bytes: Vec<u32> = (0..3 * CONTEXT).map(|i| u32::from(b"It is a truth universally"[i % 25])).collect();
            Tensor::from_vec(bytes, (3, CONTEXT), &Device::Cpu).unwrap()
        }
    }
}

fn model(task: Task, seed: u64) -> Model {
    Model::new(task, input_for(task), task.default_width(), seed, &Device::Cpu).unwrap()
}

#[test]
fn every_host_declares_its_slots_and_gives_one_row_of_logits_per_example_or_position() {
    let expected = [
        (Task::Mlp, vec![(mlp::SLOT_A, 8, Layout::Dense), (mlp::SLOT_B, 4, Layout::Dense)], [3, 4]),
        (Task::Cnn, vec![(cnn::SLOT_CONV1, 4, Layout::Image), (cnn::SLOT_CONV2, 8, Layout::Image)], [3, 10]),
        (
            Task::Transformer,
            vec![(transformer::SLOT_EMBED, 32, Layout::Sequence), (transformer::SLOT_BLOCK, 32, Layout::Sequence)],
            [3 * CONTEXT, 256],
        ),
    ];
    for (task, slots, logits) in expected {
        let m = model(task, 1);
        let got: Vec<_> = m.slots().iter().map(|s| (s.name, s.width, s.layout)).collect();
        assert_eq!(got, slots, "{task}");
        assert_eq!(m.forward(&batch(task)).unwrap().dims(), logits, "{task}");
        assert!(m.params() > 0 && !m.has_slots(), "{task}");
        // Each slot's blueprint plan names slots the host has, with blueprints of its family.
        for (slot, blueprint) in task.plan() {
            let spec = m.slots().into_iter().find(|s| s.name == slot).unwrap();
            assert!(builtin::serving(spec.layout).contains(&blueprint), "{task}: {blueprint} cannot serve {slot}");
        }
    }
}

#[test]
fn the_same_seed_builds_the_same_host_and_another_seed_another() {
    let x = batch(Task::Cnn);
    let a = model(Task::Cnn, 7).forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = model(Task::Cnn, 7).forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let c = model(Task::Cnn, 8).forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn a_host_refuses_data_of_the_wrong_shape_with_a_typed_error() {
    for (task, input) in [
        (Task::Cnn, Input::Features { features: 63, classes: 10 }),
        (Task::Cnn, BYTES),
        (Task::Mlp, BYTES),
        (Task::Transformer, DIGITS),
    ] {
        let err = Model::new(task, input, task.default_width(), 1, &Device::Cpu).unwrap_err();
        assert!(matches!(err, HostError::Input { task: t, input: i, .. } if t == task && i == input), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(task.as_str()) && text.contains(&input.to_string()), "{text}");
    }
    let err = Model::new(Task::Transformer, BYTES, 30, 1, &Device::Cpu).unwrap_err();
    assert!(matches!(err, HostError::Width { width: 30, .. }), "{err:?}");
}

#[test]
fn tasks_parse_from_their_names_and_nothing_else() {
    for task in Task::ALL {
        assert_eq!(task.as_str().parse::<Task>().unwrap(), task);
        assert_eq!(task.to_string(), task.as_str());
    }
    let err = "resnet".parse::<Task>().unwrap_err();
    assert!(matches!(&err, HostError::UnknownTask(t) if t == "resnet"), "{err:?}");
    assert_eq!(Task::default(), Task::Mlp);
}

#[test]
fn dormant_kasmina_slots_leave_every_host_forward_bit_identical() {
    for task in Task::ALL {
        let bare = model(task, 3);
        let mut grown = model(task, 3);
        let dir = tempfile::tempdir().unwrap();
        let mut widths: Vec<usize> = grown.slots().iter().map(|s| s.width).collect();
        widths.dedup();
        let kasmina = Kasmina::builder()
            .blueprints(builtin::write_library(dir.path(), &widths, 3).unwrap())
            .host_varmap(&grown.varmap)
            .build()
            .unwrap();
        grown.attach_to(&kasmina).unwrap();
        assert!(grown.has_slots());
        let x = batch(task);
        let a = bare.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = grown.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b, "{task}: a dormant slot changed the forward");
    }
}

#[test]
fn a_slot_refuses_an_activation_of_another_layout_through_the_host_error() {
    let mut m = model(Task::Mlp, 1);
    let dir = tempfile::tempdir().unwrap();
    let kasmina = Kasmina::builder()
        .blueprints(builtin::write_library(dir.path(), &[4, 8], 1).unwrap())
        .host_varmap(&m.varmap)
        .build()
        .unwrap();
    m.attach_to(&kasmina).unwrap();
    // The mlp's input slot is dense [B, 8]: a sequence batch [B, T, 8] is refused, typed.
    let x = Tensor::zeros((2, 3, 8), DType::F32, &Device::Cpu).unwrap();
    let err = m.forward(&x).unwrap_err();
    assert!(matches!(err, HostError::Slot(_)), "{err:?}");
}
