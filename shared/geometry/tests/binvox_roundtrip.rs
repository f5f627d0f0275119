//! Property: any occupancy grid survives write -> read -> write byte for byte.

use mono2mesh_geometry::{Binvox, VoxelGrid};
use proptest::prelude::*;

fn occupancy_grid() -> impl Strategy<Value = VoxelGrid> {
    // Densities near 0 and 1 give runs far longer than 255; 0.5 gives many short runs.
    ([1usize..20, 1usize..20, 1usize..20], prop_oneof![Just(0.01f64), Just(0.5), Just(0.99)], any::<u64>()).prop_map(
        |(dims, density, seed)| {
            let mut grid = VoxelGrid::new(dims);
            let mut state = seed | 1;
            for v in grid.data.iter_mut() {
                // xorshift: cheap, deterministic per seed.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *v = if (state % 10_000) as f64 / 10_000.0 < density { 1.0 } else { 0.0 };
            }
            grid
        },
    )
}

proptest! {
    #[test]
    fn write_read_write_is_identity(grid in occupancy_grid()) {
        let bytes = grid.to_binvox_bytes(0.5);
        let parsed = Binvox::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&parsed.grid, &grid);
        prop_assert_eq!(parsed.to_bytes(), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = b"#binvox 1\ndim 2 3 4\ntranslate 0 0 0\nscale 1\ndata\n".to_vec();
        bytes.extend_from_slice(&tail);
        if let Ok(parsed) = Binvox::from_bytes(&bytes) {
            prop_assert_eq!(parsed.grid.dims, [2, 4, 3]);
        }
    }
}
