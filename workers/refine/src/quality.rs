//! A confidence per asset, from checks on what the pipeline produced, so a catalog team
//! reviews the doubtful few instead of every mesh.
//!
//! Parts, each in [0, 1]:
//! * `watertight`: 1 for a closed, edge-manifold, consistently oriented surface, else 0
//!   (an AR viewer or a 3D printer needs a closed solid);
//! * `one_component`: the share of the enclosed volume held by the largest connected piece
//!   (1 for one piece; floating fragments pull it down);
//! * `plausible_volume`: how typical the shape's fill of its bounding box is for its
//!   category: 1 inside the 5th-95th percentile of the training shapes' fill, falling
//!   linearly in log scale to 0 at half the 5th or double the 95th percentile. It uses the
//!   predicted grid at 0.5, the level the ground truth is measured at. Absent without a
//!   category.
//!
//! * `silhouette_iou`: how well the mesh's silhouette from the fitted view matches the
//!   object's mask in the photo (bounding boxes aligned; see [`crate::colour::fit_view`]):
//!   a shape that explains the photo from no angle is likely wrong;
//! * `mask_coverage`: the share of the photo's object pixels the mesh covers from that view,
//!   in photo pixels (parts the network left out, such as a chair's legs, stay uncovered).
//!
//! The last two exist when the asset was coloured from its photo. The confidence is the
//! geometric mean of the parts present, so any part at 0 makes it 0. Below
//! `refine.min_confidence` the asset is flagged `needs_review`; the job still ends `done`.

use mono2mesh_core::Category;
use mono2mesh_geometry::{Mesh, VoxelGrid};
use serde::{Deserialize, Serialize};

/// Confidence below which an asset is flagged for review unless the settings say otherwise.
pub const DEFAULT_MIN_CONFIDENCE: f64 = 0.5;

/// The quality of one asset: its confidence, the parts it is made of and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Geometric mean of the parts, in [0, 1].
    pub confidence: f64,
    pub needs_review: bool,
    pub watertight: f64,
    pub one_component: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plausible_volume: Option<f64>,
    /// Occupied share of the prediction's bounding box at 0.5 (what `plausible_volume`
    /// judges), for inspection.
    pub fill: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silhouette_iou: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_coverage: Option<f64>,
}

/// How the mesh fits its photo from the fitted view (both in [0, 1]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhotoFit {
    pub silhouette_iou: f64,
    pub mask_coverage: f64,
}

/// The 5th and 95th percentile of the share of its bounding box a training shape fills
/// (occupied voxels over bounding-box voxels, 32^3). Measured on the synthetic catalog the
/// pack is evaluated on (`dataset synth --seed 7919 --models-per-category 50`, all 50
/// models of each category, 2026-12-06); real ShapeNet shapes spread wider.
pub fn typical_fill(category: Category) -> (f64, f64) {
    match category {
        Category::Aeroplane => (0.068, 0.136),
        Category::Bicycle => (0.082, 0.142),
        Category::Boat => (0.161, 0.574),
        Category::Bottle => (0.482, 0.787),
        Category::Bus => (0.670, 0.935),
        Category::Car => (0.519, 0.706),
        Category::Chair => (0.106, 0.200),
        Category::Diningtable => (0.075, 0.203),
        Category::Motorbike => (0.162, 0.255),
        Category::Sofa => (0.432, 0.702),
        Category::Train => (0.596, 0.911),
        Category::Tvmonitor => (0.208, 1.000),
    }
}

/// Occupied share of the bounding box of the voxels `>= level`; 0 when none is.
pub fn fill_ratio(grid: &VoxelGrid, level: f32) -> f64 {
    let [nx, ny, nz] = grid.dims;
    let (mut lo, mut hi, mut occupied) = ([usize::MAX; 3], [0usize; 3], 0usize);
    for x in 0..nx {
        for y in 0..ny {
            for z in 0..nz {
                if grid.get(x, y, z) >= level {
                    occupied += 1;
                    for (a, c) in [x, y, z].into_iter().enumerate() {
                        lo[a] = lo[a].min(c);
                        hi[a] = hi[a].max(c);
                    }
                }
            }
        }
    }
    if occupied == 0 {
        return 0.0;
    }
    let boxed: usize = (0..3).map(|a| hi[a] - lo[a] + 1).product();
    occupied as f64 / boxed as f64
}

/// 1 inside `[low, high]`, falling linearly in log scale to 0 at `low / 2` and `2 high`.
fn within(value: f64, (low, high): (f64, f64)) -> f64 {
    if value <= 0.0 {
        return 0.0;
    }
    let off = if value < low { (low / value).ln() } else if value > high { (value / high).ln() } else { 0.0 };
    (1.0 - off / std::f64::consts::LN_2).clamp(0.0, 1.0)
}

/// The quality of `mesh`, made from `grid`, for an object of `category` (if known) and
/// fitted to its photo as `fit` says (if coloured); `watertight` is the mesh's own check,
/// which [`crate::MeshStats`] has already made.
pub fn assess(
    mesh: &Mesh,
    watertight: bool,
    grid: &VoxelGrid,
    category: Option<Category>,
    fit: Option<PhotoFit>,
    min_confidence: f64,
) -> Quality {
    let watertight = if watertight { 1.0 } else { 0.0 };
    let volumes: Vec<f64> = mesh.component_volumes().into_iter().map(f64::abs).collect();
    let total: f64 = volumes.iter().sum();
    let largest = volumes.iter().copied().fold(0.0, f64::max);
    let one_component = if total > 0.0 { largest / total } else { 0.0 };
    let fill = fill_ratio(grid, 0.5);
    let plausible_volume = category.map(|c| within(fill, typical_fill(c)));
    let silhouette_iou = fit.map(|f| f.silhouette_iou.clamp(0.0, 1.0));
    let mask_coverage = fit.map(|f| f.mask_coverage.clamp(0.0, 1.0));
    let parts: Vec<f64> =
        [Some(watertight), Some(one_component), plausible_volume, silhouette_iou, mask_coverage].into_iter().flatten().collect();
    let confidence = if parts.iter().any(|&p| p <= 0.0) {
        0.0
    } else {
        (parts.iter().map(|p| p.ln()).sum::<f64>() / parts.len() as f64).exp()
    };
    Quality {
        confidence,
        needs_review: confidence < min_confidence,
        watertight,
        one_component,
        plausible_volume,
        fill,
        silhouette_iou,
        mask_coverage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mono2mesh_geometry::marching_cubes::marching_cubes;

    fn grid_with(boxes: &[([usize; 3], [usize; 3])]) -> VoxelGrid {
        let mut grid = VoxelGrid::new([32, 32, 32]);
        for &(lo, hi) in boxes {
            for x in lo[0]..hi[0] {
                for y in lo[1]..hi[1] {
                    for z in lo[2]..hi[2] {
                        grid.set(x, y, z, 1.0);
                    }
                }
            }
        }
        grid
    }

    #[test]
    fn a_solid_box_is_a_plausible_sofa_and_an_implausible_chair() {
        let grid = grid_with(&[([4, 4, 4], [28, 20, 16])]);
        let mesh = marching_cubes(&grid, 0.5).unwrap();
        let sofa = assess(&mesh, mesh.is_watertight(), &grid, Some(Category::Sofa), None, DEFAULT_MIN_CONFIDENCE);
        // A full box fills 100% of itself: over the sofa range's 70%, but within double.
        assert_eq!((sofa.watertight, sofa.one_component, sofa.fill), (1.0, 1.0, 1.0));
        let expected = 1.0 - (1.0f64 / 0.702).ln() / std::f64::consts::LN_2;
        assert!((sofa.plausible_volume.unwrap() - expected).abs() < 1e-9, "{sofa:?}");
        assert!(!sofa.needs_review, "{sofa:?}");
        // A chair fills 11-20% of its box: a solid block is no chair.
        let chair = assess(&mesh, mesh.is_watertight(), &grid, Some(Category::Chair), None, DEFAULT_MIN_CONFIDENCE);
        assert_eq!((chair.plausible_volume, chair.confidence, chair.needs_review), (Some(0.0), 0.0, true));
        // Without a category only the mesh checks count.
        let unknown = assess(&mesh, mesh.is_watertight(), &grid, None, None, DEFAULT_MIN_CONFIDENCE);
        assert_eq!((unknown.plausible_volume, unknown.confidence), (None, 1.0));
    }

    #[test]
    fn fragments_lower_the_confidence_by_their_share() {
        // A 12^3 body and a 6^3 fragment apart from it: 1728 of 1944 voxels in the largest piece.
        let grid = grid_with(&[([2, 2, 2], [14, 14, 14]), ([20, 20, 20], [26, 26, 26])]);
        let mesh = marching_cubes(&grid, 0.5).unwrap();
        let q = assess(&mesh, mesh.is_watertight(), &grid, None, None, 0.95);
        assert!((q.one_component - 1728.0 / 1944.0).abs() < 0.02, "{q:?}");
        assert!(q.confidence < 0.95 && q.needs_review, "{q:?}");
    }

    #[test]
    fn the_photo_fit_joins_the_geometric_mean() {
        let grid = grid_with(&[([4, 4, 4], [28, 20, 16])]);
        let mesh = marching_cubes(&grid, 0.5).unwrap();
        let fit = PhotoFit { silhouette_iou: 0.64, mask_coverage: 0.25 };
        let q = assess(&mesh, true, &grid, None, Some(fit), 0.7);
        // watertight 1, one piece 1, 0.64, 0.25: (0.64 * 0.25)^(1/4) = 0.4^(1/2) = 0.63.
        assert!((q.confidence - 0.4f64.sqrt()).abs() < 1e-9, "{q:?}");
        assert_eq!((q.silhouette_iou, q.mask_coverage), (Some(0.64), Some(0.25)));
        assert!(q.needs_review, "below 0.7");
        let json = serde_json::to_value(&q).unwrap();
        assert_eq!(json["mask_coverage"], 0.25);
        // Without a photo the parts are absent, not zero.
        let plain = assess(&mesh, true, &grid, None, None, DEFAULT_MIN_CONFIDENCE);
        assert_eq!(plain.confidence, 1.0);
        assert!(serde_json::to_value(&plain).unwrap().get("silhouette_iou").is_none());
    }

    #[test]
    fn typical_fill_is_graded_in_log_scale() {
        assert_eq!(within(0.15, (0.1, 0.2)), 1.0);
        assert!((within(0.075, (0.1, 0.2)) - (1.0 - (0.1f64 / 0.075).ln() / std::f64::consts::LN_2)).abs() < 1e-12);
        assert_eq!(within(0.05, (0.1, 0.2)), 0.0);
        assert_eq!(within(0.4, (0.1, 0.2)), 0.0);
        assert_eq!(within(0.0, (0.1, 0.2)), 0.0);
        for c in Category::ALL {
            let (low, high) = typical_fill(c);
            assert!(0.0 < low && low < high && high <= 1.0, "{c}");
        }
        assert_eq!(fill_ratio(&VoxelGrid::new([4, 4, 4]), 0.5), 0.0);
    }
}
