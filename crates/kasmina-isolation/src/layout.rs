//! Activation layouts: what shape a slot's host activation has, declared when the slot is made
//! and checked on every forward.

use crate::{Error, Result};

/// The layout of a slot's activation. `width` (the slot's feature size) is the last axis of a
/// dense or sequence activation and the channel axis (1) of an image activation. The batch is
/// always axis 0, so the isolation probe's one-sample slice (`narrow(0, 0, 1)`) works for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Layout {
    /// `[batch, width]`: an MLP's hidden activation.
    #[default]
    Dense,
    /// `[batch, time, width]`, features last: a transformer's residual stream.
    Sequence,
    /// `[batch, width, height, width_px]`, channels on axis 1: a CNN's feature map.
    Image,
}

impl Layout {
    /// Every layout.
    pub const ALL: [Layout; 3] = [Layout::Dense, Layout::Sequence, Layout::Image];

    /// The layout's name (`dense`, `sequence`, `image`), as blueprint metadata and telemetry use it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dense => "dense",
            Self::Sequence => "sequence",
            Self::Image => "image",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s names.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// The rank of an activation of this layout.
    pub fn rank(self) -> usize {
        match self {
            Self::Dense => 2,
            Self::Sequence => 3,
            Self::Image => 4,
        }
    }

    /// The axis that holds the slot's width.
    pub fn feature_axis(self) -> usize {
        match self {
            Self::Dense => 1,
            Self::Sequence => 2,
            Self::Image => 1,
        }
    }

    /// Checks an activation's shape against this layout and `width`
    /// ([`Error::LayoutMismatch`] when it does not fit).
    pub fn check(self, dims: &[usize], width: usize) -> Result<()> {
        if dims.len() == self.rank() && dims[self.feature_axis()] == width {
            Ok(())
        } else {
            Err(Error::LayoutMismatch { layout: self.as_str(), width, actual: dims.to_vec() })
        }
    }

    /// A small activation shape of this layout for probing a kernel before it is attached (gate
    /// G0): batch 2, 3 positions, a 3×5 map. The spatial sizes avoid `width`, so a kernel that
    /// reads the wrong axis as its features cannot pass by coincidence.
    pub fn probe_shape(self, width: usize) -> Vec<usize> {
        let avoid = |n: usize| if n == width { n + 4 } else { n };
        match self {
            Self::Dense => vec![2, width],
            Self::Sequence => vec![2, avoid(3), width],
            Self::Image => vec![2, width, avoid(3), avoid(5)],
        }
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_layout_accepts_its_shape_and_refuses_the_others() {
        assert!(Layout::Dense.check(&[8, 16], 16).is_ok());
        assert!(Layout::Sequence.check(&[8, 12, 16], 16).is_ok());
        assert!(Layout::Image.check(&[8, 16, 7, 7], 16).is_ok());
        for (layout, dims) in [
            (Layout::Dense, vec![8, 12, 16]),
            (Layout::Dense, vec![8, 15]),
            (Layout::Sequence, vec![8, 16]),
            (Layout::Sequence, vec![8, 16, 12]),
            (Layout::Image, vec![8, 7, 7, 16]),
            (Layout::Image, vec![8, 16, 7]),
        ] {
            let err = layout.check(&dims, 16).unwrap_err();
            assert!(matches!(err, Error::LayoutMismatch { .. }), "{layout} {dims:?}");
            assert!(err.to_string().contains(layout.as_str()), "{err}");
        }
    }

    #[test]
    fn probe_shapes_fit_their_layout_and_avoid_the_width_elsewhere() {
        for layout in Layout::ALL {
            for width in [1, 3, 5, 16] {
                let shape = layout.probe_shape(width);
                layout.check(&shape, width).unwrap();
                let others = shape.iter().enumerate().filter(|(i, _)| *i != 0 && *i != layout.feature_axis());
                for (_, &n) in others {
                    assert_ne!(n, width, "{layout} {shape:?}");
                }
            }
            assert_eq!(Layout::parse(layout.as_str()), Some(layout));
        }
    }
}
