//! Contact sheets: one row per category, sample renders composited on white, and a
//! voxel preview (the first model's ground-truth voxels seen from the same camera).

use crate::builder::{ColoredMesh, Material};
use crate::camera::ViewParams;
use crate::photo::{background_pixels, Background};
use crate::render::{render, Lighting, Rgba, ShadedMesh};
use crate::rng::Rng;
use crate::shapes::generate;
use crate::studio::composite;
use crate::voxelize::{voxel_surface_mesh, voxelize, VoxelizeError};
use mono2mesh_core::Category;
use rayon::prelude::*;

/// Composites straight-alpha RGBA over an opaque colour.
pub fn over_background(img: &Rgba, bg: [u8; 3]) -> image::RgbImage {
    composite(img, &background_pixels(&Background::Solid { color: bg }, img.width, img.height))
}

/// A grid image: `per_category` renders of distinct models per row, then the voxel
/// preview of the row's first model. Tile size `tile` pixels.
pub fn contact_sheet(categories: &[Category], per_category: usize, seed: u64, tile: usize) -> Result<image::RgbImage, VoxelizeError> {
    let cols = per_category + 1;
    let rows: Vec<Vec<image::RgbImage>> = categories
        .par_iter()
        .map(|&category| -> Result<Vec<image::RgbImage>, VoxelizeError> {
            let mut tiles = Vec::with_capacity(cols);
            let mut first_view = None;
            for i in 0..per_category {
                let model = generate(category, seed, i as u64);
                let mut rng = Rng::derive(seed, "contact-view", (category.index() * 1000 + i) as u64);
                let view = ViewParams::sample(&mut rng);
                let cam = view.camera(tile, tile);
                let img = render(&ShadedMesh::new(&model.mesh), &cam, &Lighting::default(), 3);
                tiles.push(over_background(&img, [255, 255, 255]));
                if first_view.is_none() {
                    first_view = Some((model, view));
                }
            }
            if let Some((model, view)) = first_view {
                let grid = voxelize(&model.mesh.mesh, 32)?;
                let vox = ColoredMesh::uniform(voxel_surface_mesh(&grid), Material::matte([0.55, 0.6, 0.75]));
                let img = render(&ShadedMesh::new(&vox), &view.camera(tile, tile), &Lighting::default(), 2);
                tiles.push(over_background(&img, [235, 240, 245]));
            }
            Ok(tiles)
        })
        .collect::<Result<_, _>>()?;
    let mut sheet = image::RgbImage::from_pixel((cols * tile) as u32, (categories.len() * tile) as u32, image::Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        for (c, t) in row.iter().enumerate() {
            image::imageops::replace(&mut sheet, t, (c * tile) as i64, (r * tile) as i64);
        }
    }
    Ok(sheet)
}
