//! Procedural shape families, one per Pascal3D+ category.
//!
//! Conventions (shared by the voxelizer and the renderer): +Y is up, the ground is
//! y = 0 while building, the object's front faces +X and its width runs along Z.
//! `MeshBuilder::finish` then centres the bounding box at the origin and scales its
//! diagonal to 1 (ShapeNetCore v1 normalisation).

mod aeroplane;
mod bicycle;
mod chair;
mod household;
mod motorbike;
mod sofa;
mod vehicles;

use crate::builder::{ColoredMesh, Material, MeshBuilder, Texture};
use crate::rng::Rng;
use mono2mesh_core::Category;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One generated model: identity, the parameters that produced it and its mesh.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    /// Directory name in the dataset layout; stable for a (seed, category, index).
    pub id: String,
    pub category: Category,
    pub seed: u64,
    pub index: u64,
    /// Every drawn parameter, by name (floats, choices, flags, colours).
    pub params: Map<String, Value>,
    #[serde(skip)]
    pub mesh: ColoredMesh,
}

/// Builds model number `index` of `category` for the catalog `seed`.
pub fn generate(category: Category, seed: u64, index: u64) -> Model {
    let rng = Rng::derive(seed, category.name(), index);
    let mut p = Params::new(rng);
    let mut b = MeshBuilder::new();
    match category {
        Category::Aeroplane => aeroplane::build(&mut p, &mut b),
        Category::Bicycle => bicycle::build(&mut p, &mut b),
        Category::Boat => vehicles::boat(&mut p, &mut b),
        Category::Bottle => household::bottle(&mut p, &mut b),
        Category::Bus => vehicles::bus(&mut p, &mut b),
        Category::Car => vehicles::car(&mut p, &mut b),
        Category::Chair => chair::build(&mut p, &mut b),
        Category::Diningtable => household::table(&mut p, &mut b),
        Category::Motorbike => motorbike::build(&mut p, &mut b),
        Category::Sofa => sofa::build(&mut p, &mut b),
        Category::Train => vehicles::train(&mut p, &mut b),
        Category::Tvmonitor => household::tvmonitor(&mut p, &mut b),
    }
    let mesh = b.finish();
    Model { id: model_id(category, seed, index), category, seed, index, params: p.values, mesh }
}

/// `syn-<pascal name>-<seed hex>-<index>`: readable, unique per catalog, and clearly
/// not a real ShapeNet hash.
pub fn model_id(category: Category, seed: u64, index: u64) -> String {
    format!("syn-{}-{:08x}-{:05}", category.name(), seed & 0xffff_ffff, index)
}

/// What a part is made of: picks its procedural texture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Wood,
    Fabric,
    /// Painted metal or lacquer: a faint flake.
    Paint,
    Metal,
    /// Moulded plastic, leather, paper: a soft grain.
    Plastic,
}

/// Draws parameters and records each one under its name.
pub struct Params {
    rng: Rng,
    /// Texture draws come from their own stream, so shapes are those of the untextured
    /// generator for the same seed.
    texture_rng: Rng,
    pub values: Map<String, Value>,
}

impl Params {
    pub fn new(rng: Rng) -> Self {
        let texture_rng = Rng::new(rng.clone().next_u64() ^ 0x7E57_0DE5_u64.rotate_left(29));
        Params { rng, texture_rng, values: Map::new() }
    }

    fn record(&mut self, name: &str, v: Value) {
        self.values.insert(name.to_string(), v);
    }

    /// Uniform float in [lo, hi).
    pub fn f(&mut self, name: &str, lo: f32, hi: f32) -> f32 {
        let v = self.rng.range(lo, hi);
        self.record(name, Value::from((v as f64 * 1e4).round() / 1e4));
        v
    }

    /// Integer in [lo, hi] inclusive.
    pub fn int(&mut self, name: &str, lo: usize, hi: usize) -> usize {
        let v = lo + self.rng.below(hi - lo + 1);
        self.record(name, Value::from(v));
        v
    }

    pub fn flag(&mut self, name: &str, p: f32) -> bool {
        let v = self.rng.chance(p);
        self.record(name, Value::from(v));
        v
    }

    /// One of `options`, drawn with relative `weights`.
    pub fn choice<'a>(&mut self, name: &str, options: &[(&'a str, f32)]) -> &'a str {
        let weights: Vec<f32> = options.iter().map(|o| o.1).collect();
        let v = options[self.rng.weighted(&weights)].0;
        self.record(name, Value::from(v));
        v
    }

    /// A colour from `palette`, jittered a little so no two models match exactly.
    pub fn color(&mut self, name: &str, palette: &[[f32; 3]]) -> [f32; 3] {
        let base = self.rng.pick(palette);
        let k = self.rng.range(0.85, 1.1);
        let c = base.map(|x| (x * k + self.rng.range(-0.03, 0.03)).clamp(0.0, 1.0));
        self.record(name, Value::from(c.iter().map(|x| ((*x as f64) * 1e3).round() / 1e3).collect::<Vec<_>>()));
        c
    }

    /// A material of a colour from `palette` with gloss in [gloss_lo, gloss_hi).
    pub fn material(&mut self, b: &mut MeshBuilder, name: &str, palette: &[[f32; 3]], gloss: (f32, f32)) -> u16 {
        let color = self.color(name, palette);
        let g = self.rng.range(gloss.0, gloss.1);
        b.material(Material::glossy(color, g))
    }

    /// [`Params::material`] with a procedural texture for `surface` (recorded as
    /// `<name>_texture`).
    pub fn textured(&mut self, b: &mut MeshBuilder, name: &str, palette: &[[f32; 3]], gloss: (f32, f32), surface: Surface) -> u16 {
        let color = self.color(name, palette);
        let g = self.rng.range(gloss.0, gloss.1);
        let r = &mut self.texture_rng;
        let texture = match surface {
            Surface::Wood => Texture::WoodGrain { axis: r.pick(&[0u8, 0, 2, 1]), scale: r.range(22.0, 40.0), strength: r.range(0.1, 0.2) },
            Surface::Fabric => Texture::FabricWeave { scale: r.range(140.0, 240.0), strength: r.range(0.1, 0.2) },
            Surface::Paint => Texture::Speckle { scale: r.range(120.0, 200.0), strength: r.range(0.06, 0.12) },
            Surface::Metal => Texture::BrushedMetal { axis: r.pick(&[0u8, 1, 2]), strength: r.range(0.08, 0.16) },
            Surface::Plastic => Texture::Speckle { scale: r.range(60.0, 110.0), strength: r.range(0.08, 0.16) },
        };
        self.record(&format!("{name}_texture"), serde_json::to_value(texture).unwrap_or(Value::Null));
        b.material(Material::glossy(color, g).with_texture(texture))
    }
}

/// Shared colour palettes.
pub mod palette {
    pub const WOODS: [[f32; 3]; 5] =
        [[0.55, 0.36, 0.2], [0.7, 0.5, 0.3], [0.4, 0.25, 0.13], [0.82, 0.68, 0.48], [0.3, 0.18, 0.1]];
    pub const FABRICS: [[f32; 3]; 8] = [
        [0.6, 0.1, 0.1],
        [0.2, 0.3, 0.6],
        [0.35, 0.35, 0.38],
        [0.75, 0.7, 0.6],
        [0.15, 0.15, 0.17],
        [0.3, 0.5, 0.3],
        [0.85, 0.55, 0.2],
        [0.55, 0.4, 0.55],
    ];
    pub const METALS: [[f32; 3]; 4] = [[0.7, 0.7, 0.72], [0.25, 0.25, 0.27], [0.5, 0.5, 0.52], [0.85, 0.85, 0.8]];
    pub const PAINTS: [[f32; 3]; 9] = [
        [0.8, 0.1, 0.1],
        [0.1, 0.25, 0.7],
        [0.9, 0.9, 0.9],
        [0.1, 0.1, 0.1],
        [0.6, 0.6, 0.62],
        [0.9, 0.75, 0.1],
        [0.1, 0.5, 0.25],
        [0.95, 0.45, 0.1],
        [0.35, 0.1, 0.4],
    ];
    pub const DARK: [[f32; 3]; 2] = [[0.06, 0.06, 0.07], [0.12, 0.12, 0.13]];
    pub const GLASS: [[f32; 3]; 2] = [[0.12, 0.16, 0.2], [0.18, 0.22, 0.28]];
    pub const BLACK_RUBBER: [[f32; 3]; 1] = [[0.05, 0.05, 0.05]];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_model_and_different_index_differs() {
        for c in Category::ALL {
            let a = generate(c, 42, 3);
            let b = generate(c, 42, 3);
            assert_eq!(a.mesh, b.mesh, "{c} not deterministic");
            assert_eq!(a.params, b.params);
            let other = generate(c, 42, 4);
            assert_ne!(a.params, other.params, "{c}: index 3 and 4 drew the same parameters");
            assert!(a.mesh.mesh.triangle_count() > 20, "{c} has too few triangles");
            assert!(a.mesh.mesh.triangle_count() < 60_000, "{c} has {} triangles", a.mesh.mesh.triangle_count());
            assert_eq!(a.mesh.triangle_material.len(), a.mesh.mesh.triangles.len());
            assert!(a.mesh.triangle_material.iter().all(|&m| (m as usize) < a.mesh.materials.len()));
            assert!(a.mesh.mesh.positions.iter().flatten().all(|v| v.is_finite()));
            let (lo, hi) = a.mesh.bounds().unwrap();
            let diag = crate::math::length(crate::math::sub(hi, lo));
            assert!((diag - 1.0).abs() < 1e-4);
        }
    }

    #[test]
    fn families_vary_within_a_category() {
        // Chairs must show all three base kinds within a modest number of draws.
        let bases: std::collections::BTreeSet<String> =
            (0..40).map(|i| generate(Category::Chair, 1, i).params["base"].as_str().unwrap_or("").to_string()).collect();
        assert_eq!(bases.len(), 3, "{bases:?}");
        let engines: std::collections::BTreeSet<String> = (0..40)
            .map(|i| generate(Category::Aeroplane, 1, i).params["engines"].as_str().unwrap_or("").to_string())
            .collect();
        assert!(engines.len() >= 3, "{engines:?}");
    }
}
