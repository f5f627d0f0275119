//! Every exported file is read back by an independent, widely used parser and compared
//! with the mesh it came from.

mod common;

use std::io::Cursor;

use mono2mesh_geometry::export::{encode, write, MeshFormat};
use mono2mesh_geometry::marching_cubes::marching_cubes;
use mono2mesh_geometry::smooth::{smooth, DEFAULT_LAPLACIAN};
use mono2mesh_geometry::Mesh;

/// A smoothed sphere with a translate far from the origin (like the real 8a85.binvox).
fn test_mesh() -> Mesh {
    let mut grid = common::sphere_grid(12, 4.5, 2);
    grid.translate = [1131.81, 21.398, -1.6942];
    grid.scale = 30.206;
    let mut mesh = marching_cubes(&grid, 0.5).unwrap();
    smooth(&mut mesh, DEFAULT_LAPLACIAN).unwrap();
    assert!(mesh.triangle_count() > 100);
    mesh
}

#[test]
fn obj_reads_back_with_tobj() {
    let mesh = test_mesh();
    let bytes = encode(&mesh, MeshFormat::Obj).unwrap();
    let options = tobj::LoadOptions { single_index: true, triangulate: true, ..Default::default() };
    let (models, _) = tobj::load_obj_buf(&mut Cursor::new(&bytes), &options, |_| Ok(Default::default())).unwrap();
    assert_eq!(models.len(), 1);
    let read = &models[0].mesh;
    assert_eq!(read.positions.len(), mesh.positions.len() * 3);
    assert_eq!(read.normals.len(), mesh.normals.len() * 3);
    assert_eq!(read.indices.len(), mesh.triangles.len() * 3);
    // tobj renumbers vertices in order of first use; compare each triangle's corners.
    let at = |flat: &[f32], i: u32| [flat[3 * i as usize], flat[3 * i as usize + 1], flat[3 * i as usize + 2]];
    for (k, t) in mesh.triangles.iter().enumerate() {
        for c in 0..3 {
            let i = read.indices[3 * k + c];
            // Shortest round-trip formatting makes the text exact.
            assert_eq!(at(&read.positions, i), mesh.positions[t[c] as usize]);
            assert_eq!(at(&read.normals, i), mesh.normals[t[c] as usize]);
        }
    }
}

#[test]
fn ply_reads_back_with_ply_rs() {
    use ply_rs::ply::Property;
    let mesh = test_mesh();
    let bytes = encode(&mesh, MeshFormat::Ply).unwrap();
    let parser = ply_rs::parser::Parser::<ply_rs::ply::DefaultElement>::new();
    let ply = parser.read_ply(&mut Cursor::new(&bytes)).unwrap();
    let vertices = &ply.payload["vertex"];
    let faces = &ply.payload["face"];
    assert_eq!(vertices.len(), mesh.positions.len());
    assert_eq!(faces.len(), mesh.triangles.len());
    let float = |e: &ply_rs::ply::DefaultElement, key: &str| match e.get(key) {
        Some(Property::Float(v)) => *v,
        other => panic!("{key}: {other:?}"),
    };
    for (v, e) in vertices.iter().enumerate() {
        assert_eq!([float(e, "x"), float(e, "y"), float(e, "z")], mesh.positions[v]);
        assert_eq!([float(e, "nx"), float(e, "ny"), float(e, "nz")], mesh.normals[v]);
    }
    for (t, e) in mesh.triangles.iter().zip(faces) {
        match e.get("vertex_indices") {
            Some(Property::ListUInt(list)) => assert_eq!(list.as_slice(), t),
            other => panic!("vertex_indices: {other:?}"),
        }
    }
}

#[test]
fn stl_reads_back_with_stl_io() {
    let mesh = test_mesh();
    let bytes = encode(&mesh, MeshFormat::Stl).unwrap();
    assert_eq!(bytes.len(), 84 + 50 * mesh.triangles.len());
    let read = stl_io::read_stl(&mut Cursor::new(&bytes)).unwrap();
    // stl_io merges identical corners back into shared vertices: same count as ours.
    assert_eq!(read.vertices.len(), mesh.positions.len());
    assert_eq!(read.faces.len(), mesh.triangles.len());
    for (face, t) in read.faces.iter().zip(&mesh.triangles) {
        let corners = face.vertices.map(|i| {
            let v = read.vertices[i];
            [v[0], v[1], v[2]]
        });
        for k in 0..3 {
            assert_eq!(corners[k], mesh.positions[t[k] as usize]);
        }
        // Facet normals agree with the winding (outward).
        let [a, b, c] = corners;
        let e1 = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
        let e2 = [c[0] - a[0], c[1] - a[1], c[2] - a[2]];
        let n = [e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]];
        let dot = n[0] * face.normal[0] + n[1] * face.normal[1] + n[2] * face.normal[2];
        assert!(dot > 0.0);
    }
}

#[test]
fn glb_validates_and_reads_back_with_gltf() {
    let mesh = test_mesh();
    let bytes = encode(&mesh, MeshFormat::Glb).unwrap();
    // Gltf::from_slice parses the GLB container and validates the document.
    let gltf = gltf::Gltf::from_slice(&bytes).unwrap();
    let blob = gltf.blob.clone().unwrap();
    let document = &gltf.document;
    assert_eq!(document.meshes().count(), 1);
    let primitive = document.meshes().next().unwrap().primitives().next().unwrap();
    assert_eq!(primitive.mode(), gltf::mesh::Mode::Triangles);
    let position_accessor = primitive.get(&gltf::Semantic::Positions).unwrap();
    let (min, max) = mesh.bounds().unwrap();
    let json_min: Vec<f32> = serde_json::from_value(position_accessor.min().unwrap()).unwrap();
    let json_max: Vec<f32> = serde_json::from_value(position_accessor.max().unwrap()).unwrap();
    assert_eq!(json_min, min.to_vec());
    assert_eq!(json_max, max.to_vec());

    let reader = primitive.reader(|buffer| match buffer.source() {
        gltf::buffer::Source::Bin => Some(&blob[..]),
        gltf::buffer::Source::Uri(_) => None,
    });
    let positions: Vec<[f32; 3]> = reader.read_positions().unwrap().collect();
    let normals: Vec<[f32; 3]> = reader.read_normals().unwrap().collect();
    let indices: Vec<u32> = reader.read_indices().unwrap().into_u32().collect();
    assert_eq!(positions, mesh.positions);
    assert_eq!(normals, mesh.normals);
    assert_eq!(indices, mesh.triangles.iter().flatten().copied().collect::<Vec<_>>());
    for n in &normals {
        let length = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
        assert!((length - 1.0).abs() < 1e-5, "glTF normals must be unit length");
    }
}

#[test]
fn write_picks_the_format_from_the_extension() {
    let mesh = test_mesh();
    let dir = tempfile::tempdir().unwrap();
    for format in MeshFormat::ALL {
        let path = dir.path().join(format!("sphere.{}", format.extension()));
        assert_eq!(write(&mesh, &path).unwrap(), format);
        assert_eq!(std::fs::read(&path).unwrap(), encode(&mesh, format).unwrap());
    }
    // Meshes without normals get computed ones, identical to recompute_normals.
    let mut bare = mesh.clone();
    bare.normals.clear();
    assert_eq!(encode(&bare, MeshFormat::Ply).unwrap(), encode(&mesh, MeshFormat::Ply).unwrap());
}
