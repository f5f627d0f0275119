//! Voxel IoU exactly as the official Pix2Vox evaluation computes it:
//! `IoU(t) = sum(pred >= t & gt) / sum(pred >= t | gt)` per sample and threshold.

use thiserror::Error;

use crate::voxel::VoxelGrid;

/// The thresholds the official evaluation reports.
pub const DEFAULT_THRESHOLDS: [f32; 4] = [0.2, 0.3, 0.4, 0.5];

/// Ground-truth voxels count as occupied at or above this value (binvox grids are 0 / 1).
pub const GROUND_TRUTH_THRESHOLD: f32 = 0.5;

#[derive(Debug, Error, PartialEq)]
pub enum IouError {
    #[error("prediction dims {prediction:?} differ from ground-truth dims {ground_truth:?}")]
    DimensionMismatch { prediction: [usize; 3], ground_truth: [usize; 3] },
}

/// IoU of `prediction >= threshold` against `ground_truth` for each threshold, in order.
///
/// When both the thresholded prediction and the ground truth are empty the union is 0;
/// the official code would divide 0/0 and produce NaN. We return 1.0 instead: both agree
/// perfectly that nothing is there, and a NaN would poison every mean it enters.
pub fn iou_at_thresholds(prediction: &VoxelGrid, ground_truth: &VoxelGrid, thresholds: &[f32]) -> Result<Vec<f32>, IouError> {
    if prediction.dims != ground_truth.dims {
        return Err(IouError::DimensionMismatch { prediction: prediction.dims, ground_truth: ground_truth.dims });
    }
    let mut intersection = vec![0u64; thresholds.len()];
    let mut union = vec![0u64; thresholds.len()];
    for (&p, &g) in prediction.data.iter().zip(&ground_truth.data) {
        let truth = g >= GROUND_TRUTH_THRESHOLD;
        for (k, &t) in thresholds.iter().enumerate() {
            let predicted = p >= t;
            intersection[k] += u64::from(predicted && truth);
            union[k] += u64::from(predicted || truth);
        }
    }
    Ok(intersection
        .iter()
        .zip(&union)
        .map(|(&i, &u)| if u == 0 { 1.0 } else { (i as f64 / u as f64) as f32 })
        .collect())
}

/// IoU at the official default thresholds 0.2, 0.3, 0.4, 0.5.
pub fn iou_default(prediction: &VoxelGrid, ground_truth: &VoxelGrid) -> Result<[f32; 4], IouError> {
    let values = iou_at_thresholds(prediction, ground_truth, &DEFAULT_THRESHOLDS)?;
    Ok([values[0], values[1], values[2], values[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(values: &[f32]) -> VoxelGrid {
        let mut g = VoxelGrid::new([1, 1, values.len()]);
        g.data.copy_from_slice(values);
        g
    }

    #[test]
    fn matches_the_official_formula_by_hand() {
        let prediction = grid(&[0.9, 0.45, 0.35, 0.25, 0.1, 0.6]);
        let truth = grid(&[1.0, 1.0, 0.0, 1.0, 0.0, 0.0]);
        let iou = iou_default(&prediction, &truth).unwrap();
        // t=0.2: pred {0,1,2,3,5}, gt {0,1,3}: inter 3, union 5.
        // t=0.3: pred {0,1,2,5}: inter 2, union 5. t=0.4: pred {0,1,5}: inter 2, union 4.
        // t=0.5: pred {0,5}: inter 1, union 4.
        assert_eq!(iou, [0.6, 0.4, 0.5, 0.25]);
    }

    #[test]
    fn threshold_is_inclusive() {
        let iou = iou_at_thresholds(&grid(&[0.5]), &grid(&[1.0]), &[0.5]).unwrap();
        assert_eq!(iou, vec![1.0]);
    }

    #[test]
    fn empty_against_empty_is_one_and_mismatch_is_an_error() {
        assert_eq!(iou_default(&grid(&[0.0, 0.1]), &grid(&[0.0, 0.0])).unwrap(), [1.0; 4]);
        assert_eq!(iou_default(&grid(&[0.0, 0.1]), &grid(&[1.0, 0.0])).unwrap(), [0.0; 4]);
        let err = iou_default(&grid(&[0.0]), &grid(&[0.0, 0.0])).unwrap_err();
        assert!(matches!(err, IouError::DimensionMismatch { .. }));
    }
}
