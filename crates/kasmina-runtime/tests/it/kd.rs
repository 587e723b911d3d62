//! Knowledge distillation: off by default; with a teacher, the KD term changes the loss and the
//! teacher's parameters never change.

use crate::harness::{Rig, config, dataset};
use candle_core::{D, DType, Device, Module, Tensor, Var};
use candle_nn::{Optimizer, VarBuilder, VarMap, linear, loss::cross_entropy};

#[test]
fn kd_is_off_by_default_and_changes_the_loss_when_enabled() {
    let rig = Rig::new(config());
    let device = Device::Cpu;
    let (x, y) = dataset(64, 9, &device);
    let student = rig.host.forward(&x, None);
    let teacher_logits = Tensor::randn(0f32, 1.0, (64, 2), &device).unwrap();
    assert!(!rig.kasmina.has_teacher());
    assert!(rig.kasmina.kd_loss(&student, &teacher_logits).unwrap().is_none(), "KD is off without a teacher");

    let teacher_map = VarMap::new();
    let teacher = linear(8, 2, VarBuilder::from_varmap(&teacher_map, DType::F32, &device).pp("teacher")).unwrap();
    let teacher_vars = teacher_map.all_vars();
    let report = rig.kasmina.register_teacher("teacher", &teacher_vars).unwrap();
    assert!(!report.is_over_budget());
    assert!(rig.events("teacher_registered").len() == 1);

    let task = cross_entropy(&student, &y).unwrap();
    let kd = rig.kasmina.kd_loss(&student, &teacher.forward(&x).unwrap()).unwrap().expect("KD on with a teacher");
    let total = (&task + &kd).unwrap();
    let (t, k) = (task.to_scalar::<f32>().unwrap(), kd.to_scalar::<f32>().unwrap());
    assert!(k > 0.0 && (total.to_scalar::<f32>().unwrap() - t).abs() > 1e-6, "task {t}, kd {k}");
}

#[test]
fn teacher_parameters_never_change() {
    let rig = Rig::new(config());
    let device = Device::Cpu;
    let teacher_map = VarMap::new();
    let teacher = linear(8, 2, VarBuilder::from_varmap(&teacher_map, DType::F32, &device).pp("teacher")).unwrap();
    let teacher_vars = teacher_map.all_vars();
    rig.kasmina.register_teacher("teacher", &teacher_vars).unwrap();
    let before: Vec<Vec<f32>> =
        teacher_vars.iter().map(|v| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()).collect();

    // A student trained with the KD term: the teacher's logits are detached, so no gradient
    // reaches the teacher even when its variables sit in an optimiser by mistake.
    let (x, y) = dataset(128, 3, &device);
    let mut all: Vec<Var> = rig.host.varmap.all_vars();
    all.extend(teacher_vars.iter().cloned());
    let mut opt = candle_nn::SGD::new(all, 0.5).unwrap();
    for _ in 0..20 {
        let student = rig.host.forward(&x, None);
        let kd = rig.kasmina.kd_loss(&student, &teacher.forward(&x).unwrap()).unwrap().unwrap();
        let loss = (cross_entropy(&student, &y).unwrap() + kd).unwrap();
        let grads = loss.backward().unwrap();
        for v in &teacher_vars {
            assert!(grads.get(v.as_tensor()).is_none(), "a teacher parameter received a gradient");
        }
        opt.step(&grads).unwrap();
    }
    let after: Vec<Vec<f32>> =
        teacher_vars.iter().map(|v| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()).collect();
    assert_eq!(before, after);
    // And no seed may claim or update them.
    assert!(rig.kasmina.validate_update("any-seed", &teacher_vars).is_err());
}

#[test]
fn kd_loss_matches_the_formula() {
    let device = Device::Cpu;
    let s = Tensor::new(&[[1.0f32, 2.0, 0.5], [0.0, -1.0, 1.0]], &device).unwrap();
    let t = Tensor::new(&[[0.5f32, 1.5, 1.0], [1.0, 0.0, -1.0]], &device).unwrap();
    let got = kasmina_runtime::kd::kd_loss(&s, &t, 4.0, 0.3).unwrap().to_scalar::<f32>().unwrap();
    // By hand: 0.3 * mean_b sum_c p_t (log p_t - log p_s), at T = 4.
    let p = |x: &Tensor| candle_nn::ops::softmax(&(x / 4.0).unwrap(), D::Minus1).unwrap().to_vec2::<f32>().unwrap();
    let (ps, pt) = (p(&s), p(&t));
    let mut kl = 0.0;
    for b in 0..2 {
        for c in 0..3 {
            kl += pt[b][c] * (pt[b][c].ln() - ps[b][c].ln());
        }
    }
    assert!((got - 0.3 * kl / 2.0).abs() < 1e-6, "{got} vs {}", 0.3 * kl / 2.0);
}
