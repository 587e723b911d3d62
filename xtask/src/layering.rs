//! `cargo xtask layering`: the crate graph must follow the layers of `STYLE.md`.
//!
//! L0, the wire contract `leyline` and the wall clock `kasmina-clock`, depends on no workspace
//! crate (not even on each other). L1, the seven domain crates, depend only on L0 crates (never
//! on each other). L2 `kasmina-runtime` composes L0 and L1. L3, libraries above the runtime (the
//! control plane `kasmina-server`, the reference hosts `kasmina-hosts`, the Oona bus
//! `kasmina-oona`), use L0–L2 and not each
//! other. L4 (the binaries and the benches) may use everything below. `xtask` depends on no workspace crate and no crate depends on it. Candle may
//! be used only where tensors are the subject.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Layer of each workspace crate. A crate not in this table fails the check: adding a crate
/// means deciding its layer here.
pub(crate) const LAYERS: &[(&str, u8)] = &[
    ("leyline", 0),
    ("kasmina-clock", 0),
    ("kasmina-lifecycle", 1),
    ("kasmina-safety", 1),
    ("kasmina-isolation", 1),
    ("kasmina-registry", 1),
    ("kasmina-memory", 1),
    ("kasmina-security", 1),
    ("kasmina-telemetry", 1),
    ("kasmina-runtime", 2),
    ("kasmina-server", 3),
    ("kasmina-hosts", 3),
    ("kasmina-oona", 3),
    ("kasmina-cli", 4),
    ("kasmina-benches", 4),
    ("xtask", 255),
];

/// Workspace crates allowed to depend on candle (directly).
pub(crate) const CANDLE_ALLOWED: &[&str] =
    &["kasmina-isolation", "kasmina-registry", "kasmina-runtime", "kasmina-hosts", "kasmina-cli", "kasmina-benches"];

/// Workspace crates whose tests (dev-dependencies only) may use candle: their tests drive a
/// training step through the runtime, which takes candle's gradients.
pub(crate) const CANDLE_IN_TESTS: &[&str] = &["kasmina-oona"];

/// External crates that only the crates in [`CANDLE_ALLOWED`] may use.
const CANDLE_CRATES: &[&str] = &["candle-core", "candle-nn"];

/// One workspace package and the dependencies it declares (normal, dev and build).
#[derive(Debug, Clone)]
pub(crate) struct Package {
    pub(crate) name: String,
    /// (dependency name, dependency kind) for every declared dependency.
    pub(crate) deps: Vec<(String, String)>,
}

fn layer_of(name: &str) -> Option<u8> {
    LAYERS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)
}

/// Why [`edge_allowed`] refused an edge of the crate graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EdgeError {
    /// One of the two crates is not in [`LAYERS`].
    Unlisted { from: String, to: String },
    /// The layers forbid `from` to depend on `to`.
    Forbidden { from: String, from_layer: u8, to: String, to_layer: u8 },
}

impl std::fmt::Display for EdgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unlisted { from, to } => {
                write!(f, "`{from}` -> `{to}`: crate missing from the layer table in xtask/src/layering.rs")
            }
            Self::Forbidden { from, from_layer, to, to_layer } => write!(
                f,
                "`{from}` (layer {}) must not depend on `{to}` (layer {})",
                layer_name(*from_layer),
                layer_name(*to_layer)
            ),
        }
    }
}

/// Whether `from` may depend on the workspace crate `to`.
pub(crate) fn edge_allowed(from: &str, to: &str) -> Result<(), EdgeError> {
    let (Some(lf), Some(lt)) = (layer_of(from), layer_of(to)) else {
        return Err(EdgeError::Unlisted { from: from.to_owned(), to: to.to_owned() });
    };
    let ok = match (lf, lt) {
        (255, _) | (_, 255) => false,
        (0, _) => false,
        (1, 0) => true,
        (1, _) => false,
        (2, t) => t < 2,
        (3, t) => t < 3,
        (4, t) => t < 4,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(EdgeError::Forbidden { from: from.to_owned(), from_layer: lf, to: to.to_owned(), to_layer: lt })
    }
}

fn layer_name(l: u8) -> &'static str {
    match l {
        0 => "L0 foundation (wire contract, wall clock)",
        1 => "L1 domain",
        2 => "L2 runtime",
        3 => "L3 libraries above the runtime",
        4 => "L4 binaries/benches",
        _ => "tooling",
    }
}

/// Every violation in the graph (empty when the graph is clean).
pub(crate) fn violations(packages: &[Package]) -> Vec<String> {
    let names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    let mut out = Vec::new();
    for p in packages {
        if layer_of(&p.name).is_none() {
            out.push(format!("`{}` is not in the layer table in xtask/src/layering.rs", p.name));
            continue;
        }
        for (dep, kind) in &p.deps {
            if names.contains(&dep.as_str()) {
                // Dev-dependencies of a domain crate on another domain crate would still couple
                // them; only L4 (binaries, benches) may span crates freely.
                if let Err(e) = edge_allowed(&p.name, dep) {
                    out.push(format!("{e} ({kind} dependency)"));
                }
            } else if CANDLE_CRATES.contains(&dep.as_str())
                && !CANDLE_ALLOWED.contains(&p.name.as_str())
                && !(kind == "dev" && CANDLE_IN_TESTS.contains(&p.name.as_str()))
            {
                out.push(format!(
                    "`{}` must not depend on `{dep}` ({kind} dependency): candle belongs only to {}",
                    p.name,
                    CANDLE_ALLOWED.join(", ")
                ));
            }
        }
    }
    out
}

/// Reads the workspace packages from `cargo metadata`.
pub(crate) fn packages(root: &Path) -> Result<Vec<Package>> {
    let output = crate::cargo()
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(root)
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let meta: serde_json::Value = serde_json::from_slice(&output.stdout).context("parsing cargo metadata")?;
    let mut out = Vec::new();
    for pkg in meta["packages"].as_array().context("metadata has no packages")? {
        let name = pkg["name"].as_str().context("package without a name")?.to_owned();
        let mut deps = BTreeMap::new();
        for dep in pkg["dependencies"].as_array().context("package without dependencies")? {
            let dep_name = dep["name"].as_str().context("dependency without a name")?.to_owned();
            let kind = dep["kind"].as_str().unwrap_or("normal").to_owned();
            deps.insert((dep_name, kind), ());
        }
        out.push(Package { name, deps: deps.into_keys().collect() });
    }
    Ok(out)
}

pub(crate) fn run(root: &Path) -> Result<()> {
    let pkgs = packages(root)?;
    let v = violations(&pkgs);
    if !v.is_empty() {
        bail!("layering check failed:\n  {}", v.join("\n  "));
    }
    eprintln!("layering: {} workspace crates, every dependency edge allowed", pkgs.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, deps: &[&str]) -> Package {
        Package { name: name.into(), deps: deps.iter().map(|d| ((*d).into(), "normal".into())).collect() }
    }

    fn clean_graph() -> Vec<Package> {
        vec![
            pkg("leyline", &["prost"]),
            pkg("kasmina-clock", &[]),
            pkg("kasmina-safety", &["leyline", "kasmina-clock", "thiserror"]),
            pkg("kasmina-memory", &["leyline", "moka"]),
            pkg("kasmina-isolation", &["leyline", "candle-core"]),
            pkg("kasmina-runtime", &["leyline", "kasmina-safety", "kasmina-memory", "candle-core"]),
            pkg("kasmina-server", &["kasmina-runtime", "leyline", "tonic"]),
            pkg("kasmina-hosts", &["kasmina-runtime", "candle-core"]),
            pkg("kasmina-cli", &["kasmina-server", "kasmina-hosts", "kasmina-runtime", "leyline"]),
            pkg("xtask", &["anyhow"]),
        ]
    }

    #[test]
    fn clean_graph_passes() {
        assert_eq!(violations(&clean_graph()), Vec::<String>::new());
    }

    #[test]
    fn domain_crates_may_use_every_l0_crate() {
        for from in ["kasmina-lifecycle", "kasmina-security", "kasmina-telemetry", "kasmina-safety"] {
            for to in ["leyline", "kasmina-clock"] {
                assert_eq!(edge_allowed(from, to), Ok(()), "{from} -> {to}");
            }
        }
        assert_eq!(edge_allowed("kasmina-runtime", "kasmina-clock"), Ok(()));
        assert_eq!(edge_allowed("kasmina-cli", "kasmina-clock"), Ok(()));
    }

    #[test]
    fn l0_crates_depend_on_no_workspace_crate() {
        for (from, to) in
            [("kasmina-clock", "leyline"), ("leyline", "kasmina-clock"), ("kasmina-clock", "kasmina-safety")]
        {
            assert!(edge_allowed(from, to).is_err(), "{from} -> {to} should be refused");
        }
        let mut g = clean_graph();
        g[1] = pkg("kasmina-clock", &["leyline"]);
        let v = violations(&g);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("`kasmina-clock`") && v[0].contains("`leyline`"), "{v:?}");
    }

    #[test]
    fn domain_to_domain_edge_fails() {
        let mut g = clean_graph();
        g[2] = pkg("kasmina-safety", &["leyline", "kasmina-memory"]);
        let v = violations(&g);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("`kasmina-safety`") && v[0].contains("`kasmina-memory`"), "{v:?}");
    }

    #[test]
    fn upward_and_tooling_edges_fail() {
        for (from, to) in [
            ("leyline", "kasmina-safety"),
            ("kasmina-memory", "kasmina-runtime"),
            ("kasmina-runtime", "kasmina-cli"),
            ("kasmina-runtime", "kasmina-server"),
            ("kasmina-server", "kasmina-cli"),
            ("kasmina-server", "kasmina-hosts"),
            ("kasmina-hosts", "kasmina-server"),
            ("kasmina-hosts", "kasmina-cli"),
            ("kasmina-oona", "kasmina-server"),
            ("kasmina-server", "kasmina-oona"),
            ("kasmina-cli", "xtask"),
            ("xtask", "leyline"),
        ] {
            assert!(edge_allowed(from, to).is_err(), "{from} -> {to} should be refused");
        }
    }

    #[test]
    fn candle_in_safety_fails() {
        let mut g = clean_graph();
        g[2] = pkg("kasmina-safety", &["leyline", "candle-core"]);
        let v = violations(&g);
        assert!(v.iter().any(|e| e.contains("candle")), "{v:?}");
    }

    #[test]
    fn candle_in_the_oona_crate_only_for_its_tests() {
        let dev = |deps: &[&str]| Package {
            name: "kasmina-oona".into(),
            deps: deps.iter().map(|d| ((*d).into(), "dev".into())).collect(),
        };
        let mut g = clean_graph();
        g.push(dev(&["candle-core"]));
        assert_eq!(violations(&g), Vec::<String>::new());
        let mut g = clean_graph();
        g.push(pkg("kasmina-oona", &["kasmina-runtime", "candle-core"]));
        assert!(violations(&g).iter().any(|v| v.contains("kasmina-oona") && v.contains("candle")));
    }

    #[test]
    fn unknown_crate_fails() {
        let mut g = clean_graph();
        g.push(pkg("kasmina-extra", &["leyline"]));
        assert!(!violations(&g).is_empty());
    }

    /// The real workspace graph, read from `cargo metadata`, obeys the layers.
    #[test]
    fn workspace_graph_is_layered() {
        let root = crate::workspace_root();
        let pkgs = packages(&root).expect("cargo metadata");
        assert!(pkgs.iter().any(|p| p.name == "leyline"));
        assert_eq!(violations(&pkgs), Vec::<String>::new());
    }
}
