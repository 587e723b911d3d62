//! Slot layouts (dense, sequence, image) and G0's shape probe: a slot checks every forward
//! against its declared layout, and a kernel that does not return a finite delta of the probe
//! input's shape is refused at G0 with nothing attached.

use candle_core::{DType, Device, Tensor};
use kasmina_runtime::reexports::security::KeyRing;
use kasmina_runtime::{
    BlueprintLibrary, BlueprintRuntime, FetchError, Kasmina, KernelArtifact, Layout, blueprint::builtin,
};
use leyline::adaptation_command::Payload;
use leyline::{
    AdaptationCommand, BlueprintDescriptor, CommandSeedOperation, CommandType, SeedLifecycleStage as Stage,
    SeedOperation,
};

use crate::harness::{NOW_UNIX, SECRET, wall};

const W: usize = 8;

fn germinate(id: &str, blueprint: &str, slot: &str) -> AdaptationCommand {
    AdaptationCommand {
        command_id: format!("g-{id}"),
        command_type: CommandType::CommandSeed as i32,
        target_seed_id: id.to_owned(),
        issued_at: Some(leyline::wkt::Timestamp { seconds: NOW_UNIX as i64, nanos: 0 }),
        payload: Some(Payload::SeedOperation(CommandSeedOperation {
            operation: SeedOperation::SeedOpGerminate as i32,
            blueprint_id: blueprint.to_owned(),
            parameters: Default::default(),
        })),
        annotations: [("slot".to_owned(), slot.to_owned())].into(),
        ..Default::default()
    }
}

fn kasmina(blueprints: impl BlueprintRuntime + 'static) -> Kasmina {
    Kasmina::builder()
        .signing_keys(KeyRing::with_key("default", SECRET).unwrap())
        .blueprints(blueprints)
        .clock(quanta::Clock::mock().0)
        .wall_clock(wall)
        .build()
        .unwrap()
}

fn library() -> BlueprintLibrary {
    let dir = tempfile::tempdir().unwrap().keep();
    builtin::write_library(&dir, &[W], 5).unwrap()
}

#[test]
fn every_forward_is_checked_against_the_slot_layout() {
    let k = kasmina(library());
    let dense = k.slot("dense", W).unwrap();
    let seq = k.slot_with_layout("seq", W, Layout::Sequence).unwrap();
    let image = k.slot_with_layout("image", W, Layout::Image).unwrap();
    assert_eq!((dense.layout(), seq.layout(), image.layout()), (Layout::Dense, Layout::Sequence, Layout::Image));
    let ones = |shape: &[usize]| Tensor::ones(shape, DType::F32, &Device::Cpu).unwrap();
    for (slot, good, bad) in [
        (&dense, vec![4, W], vec![4, 3, W]),
        (&seq, vec![4, 3, W], vec![4, W]),
        (&image, vec![4, W, 5, 5], vec![4, 5, 5, W]),
    ] {
        let out = slot.forward(&ones(&good)).unwrap();
        assert_eq!(out.dims(), good.as_slice(), "an empty slot forwards the host activation");
        let err = slot.forward(&ones(&bad)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(slot.layout().as_str()) && text.contains(&format!("{bad:?}")), "{text}");
    }
}

/// A source that serves the built-in library, except that one blueprint's artefact is replaced.
#[derive(Debug)]
struct Tampered {
    library: BlueprintLibrary,
    id: &'static str,
    replace: fn(KernelArtifact) -> KernelArtifact,
}

impl BlueprintRuntime for Tampered {
    fn descriptor(&self, id: &str) -> Option<BlueprintDescriptor> {
        self.library.descriptor(id)
    }
    fn descriptors(&self) -> Vec<BlueprintDescriptor> {
        self.library.descriptors()
    }
    fn fetch(&self, id: &str, width: usize, device: &Device) -> Result<KernelArtifact, FetchError> {
        let artifact = self.library.fetch(id, width, device)?;
        Ok(if id == self.id { (self.replace)(artifact) } else { artifact })
    }
}

/// Germinates `blueprint` into a slot of `layout`; returns the receipt's reason and the runtime.
fn germinate_into(blueprints: impl BlueprintRuntime + 'static, layout: Layout, blueprint: &str) -> (String, Kasmina) {
    let k = kasmina(blueprints);
    k.slot_with_layout("s", W, layout).unwrap();
    let receipt = k.apply(germinate("seed-1", blueprint, "s"));
    (receipt.reason, k)
}

/// The germination left no trace: no seed, the slot DORMANT and free, forwarding unchanged.
fn assert_nothing_attached(k: &Kasmina) {
    assert!(k.seed_summaries().is_empty(), "no seed exists: {:?}", k.seed_summaries());
    let slot = k.get_slot("s").unwrap();
    assert_eq!(slot.stage(), Stage::SeedStageDormant);
    assert_eq!(slot.seed_id(), None);
    let states = k.export_seed_states();
    assert!(states.iter().all(|s| s.seed_id.is_empty()), "{states:?}");
    // The slot is free: the identity (which fits every layout) germinates there next.
    assert_eq!(k.apply(germinate("seed-2", builtin::IDENTITY, "s")).reason, "ok");
}

#[test]
fn a_dense_kernel_in_an_image_slot_is_refused_at_g0_with_nothing_attached() {
    let (reason, k) = germinate_into(library(), Layout::Image, builtin::RESIDUAL_MLP);
    assert_eq!(reason, "shape_mismatch");
    assert_nothing_attached(&k);
}

#[test]
fn a_kernel_whose_delta_has_another_shape_is_refused_at_g0() {
    // The artefact of another width: its delta cannot have the probe input's shape.
    let tampered = Tampered {
        library: {
            let dir = tempfile::tempdir().unwrap().keep();
            builtin::write_library(&dir, &[W, W + 4], 5).unwrap()
        },
        id: builtin::ZERO_LINEAR,
        // A valid kernel, but for another width: it instantiates, and fails on the probe input.
        replace: |a| builtin::artifact(builtin::ZERO_LINEAR, a.width + 4, 5, &Device::Cpu).unwrap(),
    };
    let (reason, k) = germinate_into(tampered, Layout::Dense, builtin::ZERO_LINEAR);
    assert_eq!(reason, "shape_mismatch");
    assert_nothing_attached(&k);
}

#[test]
fn a_kernel_whose_probe_delta_is_not_finite_is_refused_at_g0() {
    let tampered = Tampered {
        library: library(),
        id: builtin::BROKEN,
        replace: |mut a| {
            a.poison_after_steps = Some(0);
            a
        },
    };
    let (reason, k) = germinate_into(tampered, Layout::Dense, builtin::BROKEN);
    assert_eq!(reason, "probe_not_finite");
    assert_nothing_attached(&k);
}

#[test]
fn a_kernel_of_the_slot_layout_passes_g0_and_the_identity_serves_every_layout() {
    for layout in Layout::ALL {
        let (reason, k) = germinate_into(library(), layout, builtin::IDENTITY);
        assert_eq!(reason, "ok", "{layout}");
        assert_eq!(k.get_slot("s").unwrap().stage(), Stage::SeedStageGerminated, "{layout}");
    }
    let (reason, _) = germinate_into(library(), Layout::Dense, builtin::RESIDUAL_MLP);
    assert_eq!(reason, "ok");
}

/// Each family's kernels pass G0 in the layouts they serve and are refused in the others.
#[test]
fn g0_admits_each_family_exactly_in_the_layouts_it_serves() {
    let cases = [
        (builtin::CONV_RESIDUAL, Layout::Image, "ok"),
        (builtin::SQUEEZE_EXCITE, Layout::Image, "ok"),
        (builtin::CONV_RESIDUAL, Layout::Dense, "shape_mismatch"),
        (builtin::CONV_LOW_RANK, Layout::Sequence, "shape_mismatch"),
        (builtin::CAUSAL_ATTENTION, Layout::Sequence, "ok"),
        (builtin::PRENORM_MLP, Layout::Sequence, "ok"),
        (builtin::CAUSAL_ATTENTION, Layout::Dense, "shape_mismatch"),
        (builtin::SEQUENCE_LOW_RANK, Layout::Image, "shape_mismatch"),
        (builtin::RESIDUAL_MLP, Layout::Sequence, "ok"),
        (builtin::LOW_RANK, Layout::Image, "shape_mismatch"),
    ];
    for (blueprint, layout, expected) in cases {
        let (reason, k) = germinate_into(library(), layout, blueprint);
        assert_eq!(reason, expected, "{blueprint} in a {layout} slot");
        let stage = k.get_slot("s").unwrap().stage();
        let want = if expected == "ok" { Stage::SeedStageGerminated } else { Stage::SeedStageDormant };
        assert_eq!(stage, want, "{blueprint} in a {layout} slot");
    }
}

/// A source whose fetches of one blueprint fail.
#[derive(Debug)]
struct Failing(BlueprintLibrary);

impl BlueprintRuntime for Failing {
    fn descriptor(&self, id: &str) -> Option<BlueprintDescriptor> {
        self.0.descriptor(id)
    }
    fn descriptors(&self) -> Vec<BlueprintDescriptor> {
        self.0.descriptors()
    }
    fn fetch(&self, id: &str, width: usize, device: &Device) -> Result<KernelArtifact, FetchError> {
        if id == builtin::CONV_RESIDUAL {
            return Err(FetchError::Other("injected".into()));
        }
        self.0.fetch(id, width, device)
    }
}

/// The fallback serves the slot's layout: for an image slot the dense default (`BP001`) is
/// skipped and the identity serves.
#[test]
fn a_failed_fetch_for_an_image_slot_falls_back_to_a_kernel_of_its_layout() {
    let (reason, k) = germinate_into(Failing(library()), Layout::Image, builtin::CONV_RESIDUAL);
    assert_eq!(reason, "ok");
    let summary = &k.seed_summaries()[0];
    assert_eq!(k.get_slot("s").unwrap().stage(), Stage::SeedStageGerminated, "{summary:?}");
    assert_eq!(summary.blueprint_id, builtin::CONV_RESIDUAL);
    assert_eq!(summary.kernel_blueprint_id, builtin::IDENTITY, "the identity served, not the dense BP001");
}
