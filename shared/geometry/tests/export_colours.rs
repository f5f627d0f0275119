//! Vertex colours in GLB, PLY and OBJ, read back by independent parsers; and files written
//! without colours are byte for byte what they were before colours existed.

mod common;

use std::io::Cursor;

use mono2mesh_geometry::colour::{linear_to_srgb, linear_to_srgb_u8, Colours};
use mono2mesh_geometry::export::{encode, encode_coloured, ExportError, MeshFormat};
use mono2mesh_geometry::marching_cubes::marching_cubes;
use mono2mesh_geometry::smooth::{smooth, DEFAULT_LAPLACIAN};
use mono2mesh_geometry::Mesh;

fn test_mesh() -> Mesh {
    let grid = common::sphere_grid(12, 4.5, 2);
    let mut mesh = marching_cubes(&grid, 0.5).unwrap();
    smooth(&mut mesh, DEFAULT_LAPLACIAN).unwrap();
    mesh
}

/// Red above the equator, blue below: something a reader must keep per vertex.
fn test_colours(mesh: &Mesh) -> Colours {
    let mid = mesh.bounds().map(|(lo, hi)| (lo[1] + hi[1]) / 2.0).unwrap();
    let per_vertex = mesh.positions.iter().map(|p| if p[1] > mid { [0.8, 0.05, 0.02, 1.0] } else { [0.01, 0.1, 0.6, 1.0] }).collect();
    Colours { per_vertex, base_colour: [0.3, 0.3, 0.35, 1.0] }
}

/// FNV-1a, to pin file bytes in a line.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// An octahedron given by hand (not through marching cubes or smoothing, whose changes
/// must not move these hashes), with and without its own normals.
fn octahedron(with_normals: bool) -> Mesh {
    let positions = vec![[0.5, 0.0, 0.0], [-0.5, 0.0, 0.0], [0.0, 0.75, 0.0], [0.0, -0.75, 0.0], [0.0, 0.0, 0.25], [0.0, 0.0, -0.25]];
    let triangles = vec![[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]];
    let mut mesh = Mesh { positions, triangles, normals: Vec::new() };
    if with_normals {
        mesh.normals = mesh.positions.iter().map(|p| {
            let q = [p[0] + 0.1, p[1] + 0.2, p[2] + 0.3];
            let l = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2]).sqrt();
            q.map(|v| v / l)
        }).collect();
    }
    mesh
}

#[test]
fn files_without_colours_are_unchanged() {
    // What `encode` wrote for these meshes before colours were added (the writers at
    // d6dfcdb): colour support must not move a byte of uncoloured files.
    let got: Vec<(bool, MeshFormat, usize, u64)> = [false, true]
        .iter()
        .flat_map(|&normals| {
            let mesh = octahedron(normals);
            MeshFormat::ALL.map(|f| {
                let bytes = encode(&mesh, f).unwrap();
                (normals, f, bytes.len(), fnv(&bytes))
            })
        })
        .collect();
    println!("{got:?}");
    assert_eq!(got, EXPECTED);
}

const EXPECTED: [(bool, MeshFormat, usize, u64); 8] = [
    (false, MeshFormat::Obj, 272, 0x4a9182e8f1178376),
    (false, MeshFormat::Ply, 490, 0x7f1b23c77a40f0d3),
    (false, MeshFormat::Stl, 484, 0x953a50bd66b5d387),
    (false, MeshFormat::Glb, 944, 0xc2f9f02ff5699bef),
    (true, MeshFormat::Obj, 426, 0x2d2c07bbaab85d21),
    (true, MeshFormat::Ply, 490, 0xef7d43c38dca3361),
    (true, MeshFormat::Stl, 484, 0x953a50bd66b5d387),
    (true, MeshFormat::Glb, 944, 0xa5f13b3e59398c11),
];

#[test]
fn glb_carries_color_0_and_a_material() {
    let mesh = test_mesh();
    let colours = test_colours(&mesh);
    let bytes = encode_coloured(&mesh, &colours, MeshFormat::Glb).unwrap();
    let gltf = gltf::Gltf::from_slice(&bytes).unwrap();
    let blob = gltf.blob.clone().unwrap();
    let primitive = gltf.document.meshes().next().unwrap().primitives().next().unwrap();
    let reader = primitive.reader(|buffer| match buffer.source() {
        gltf::buffer::Source::Bin => Some(&blob[..]),
        gltf::buffer::Source::Uri(_) => None,
    });
    let read: Vec<[f32; 4]> = reader.read_colors(0).unwrap().into_rgba_f32().collect();
    assert_eq!(read.len(), mesh.positions.len());
    for (got, want) in read.iter().zip(&colours.per_vertex) {
        for c in 0..4 {
            assert!((got[c] - want[c]).abs() <= 1.0 / 65535.0, "{got:?} vs {want:?}");
        }
    }
    // The same positions, normals and indices as the uncoloured file.
    assert_eq!(reader.read_positions().unwrap().collect::<Vec<_>>(), mesh.positions);
    assert_eq!(reader.read_indices().unwrap().into_u32().count(), mesh.triangles.len() * 3);
    // COLOR_0 multiplies baseColorFactor in glTF: white, so each vertex shows its own colour;
    // not a metal.
    let pbr = primitive.material().pbr_metallic_roughness();
    assert_eq!(pbr.base_color_factor(), [1.0; 4]);
    assert_eq!(pbr.metallic_factor(), 0.0);

    // Only a base colour: the factor is that colour and there is no COLOR_0.
    let plain = encode_coloured(&mesh, &Colours::uniform([0.2, 0.4, 0.6, 1.0]), MeshFormat::Glb).unwrap();
    let gltf = gltf::Gltf::from_slice(&plain).unwrap();
    let primitive = gltf.document.meshes().next().unwrap().primitives().next().unwrap();
    assert!(primitive.get(&gltf::Semantic::Colors(0)).is_none());
    assert_eq!(primitive.material().pbr_metallic_roughness().base_color_factor(), [0.2, 0.4, 0.6, 1.0]);
    assert!(plain.len() < bytes.len());
}

#[test]
fn ply_and_obj_carry_srgb_vertex_colours() {
    use ply_rs::ply::Property;
    let mesh = test_mesh();
    let colours = test_colours(&mesh);
    let bytes = encode_coloured(&mesh, &colours, MeshFormat::Ply).unwrap();
    let ply = ply_rs::parser::Parser::<ply_rs::ply::DefaultElement>::new().read_ply(&mut Cursor::new(&bytes)).unwrap();
    let vertices = &ply.payload["vertex"];
    assert_eq!(vertices.len(), mesh.positions.len());
    for (e, c) in vertices.iter().zip(&colours.per_vertex) {
        let byte = |k: &str| match e.get(k) {
            Some(Property::UChar(v)) => *v,
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!([byte("red"), byte("green"), byte("blue")], [0, 1, 2].map(|i| linear_to_srgb_u8(c[i])));
        assert!(matches!(e.get("nz"), Some(Property::Float(_))));
    }
    assert_eq!(ply.payload["face"].len(), mesh.triangles.len());

    let bytes = encode_coloured(&mesh, &colours, MeshFormat::Obj).unwrap();
    let options = tobj::LoadOptions { single_index: true, triangulate: true, ..Default::default() };
    let (models, _) = tobj::load_obj_buf(&mut Cursor::new(&bytes), &options, |_| Ok(Default::default())).unwrap();
    let read = &models[0].mesh;
    assert_eq!(read.vertex_color.len(), mesh.positions.len() * 3);
    // tobj renumbers vertices in order of first use: compare through the triangles.
    for (k, t) in mesh.triangles.iter().enumerate() {
        for c in 0..3 {
            let i = read.indices[3 * k + c] as usize;
            let want = colours.per_vertex[t[c] as usize];
            for ch in 0..3 {
                assert_eq!(read.vertex_color[3 * i + ch], linear_to_srgb(want[ch]));
            }
        }
    }
    // STL has no colour: the same bytes as without.
    assert_eq!(encode_coloured(&mesh, &colours, MeshFormat::Stl).unwrap(), encode(&mesh, MeshFormat::Stl).unwrap());
}

#[test]
fn colours_that_do_not_fit_are_errors() {
    let mesh = test_mesh();
    let mut colours = test_colours(&mesh);
    colours.per_vertex.pop();
    for format in MeshFormat::ALL {
        assert!(matches!(encode_coloured(&mesh, &colours, format), Err(ExportError::Colours(_))), "{format}");
    }
    let mut colours = test_colours(&mesh);
    colours.per_vertex[3] = [f32::INFINITY, 0.0, 0.0, 1.0];
    let error = encode_coloured(&mesh, &colours, MeshFormat::Glb).unwrap_err();
    assert!(error.to_string().contains("colour 3"), "{error}");
    assert!(matches!(encode_coloured(&Mesh::default(), &Colours::uniform([0.5; 4]), MeshFormat::Glb), Err(ExportError::Empty(_))));
}
