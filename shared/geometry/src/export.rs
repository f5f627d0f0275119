//! Mesh files: Wavefront OBJ (with normals), binary PLY, binary STL and binary glTF (.glb).
//!
//! Every writer takes the mesh's per-vertex normals when it has one per vertex and
//! computes area-weighted ones otherwise (STL stores per-facet normals, computed from the
//! triangle). Numbers in OBJ are written with Rust's shortest round-trip formatting, so
//! reading a file back gives exactly the f32 values written.
//!
//! **Colours.** [`encode_coloured`] adds a mesh's [`Colours`] where the format can hold them:
//! GLB gets a `COLOR_0` attribute (normalized `UNSIGNED_SHORT` VEC4, linear, 8 bytes a vertex)
//! and a material (see [`encode_coloured`]); PLY gets `red green blue` uchar properties and OBJ
//! the common `v x y z r g b` extension (both sRGB, as their readers expect); STL has no
//! standard colour and is written as without. [`encode`] writes no colour and its bytes are
//! exactly what they were before colours existed.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::colour::{linear_to_srgb, linear_to_srgb_u8, ColourError, Colours};
use crate::mesh::Mesh;

#[derive(Debug, Error)]
pub enum ExportError {
    #[error("unknown mesh format {0:?} (expected obj, ply, stl or glb)")]
    UnknownFormat(String),
    #[error("the mesh has no triangles; {0} cannot hold an empty mesh")]
    Empty(MeshFormat),
    #[error("triangle {triangle} uses vertex {vertex} but the mesh has {vertex_count} vertices")]
    BadIndex { triangle: usize, vertex: u32, vertex_count: usize },
    #[error("the mesh is too large for {0}")]
    TooLarge(MeshFormat),
    #[error("vertex colours: {0}")]
    Colours(#[from] ColourError),
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeshFormat {
    Obj,
    Ply,
    Stl,
    Glb,
}

impl MeshFormat {
    pub const ALL: [MeshFormat; 4] = [MeshFormat::Obj, MeshFormat::Ply, MeshFormat::Stl, MeshFormat::Glb];

    /// Format named by a file extension or format name (case-insensitive, leading dot allowed).
    pub fn from_extension(extension: &str) -> Result<MeshFormat, ExportError> {
        match extension.trim_start_matches('.').to_ascii_lowercase().as_str() {
            "obj" => Ok(MeshFormat::Obj),
            "ply" => Ok(MeshFormat::Ply),
            "stl" => Ok(MeshFormat::Stl),
            "glb" => Ok(MeshFormat::Glb),
            _ => Err(ExportError::UnknownFormat(extension.to_string())),
        }
    }

    /// Format implied by a path's extension.
    pub fn from_path(path: impl AsRef<Path>) -> Result<MeshFormat, ExportError> {
        let path = path.as_ref();
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
        MeshFormat::from_extension(extension).map_err(|_| ExportError::UnknownFormat(path.display().to_string()))
    }

    pub fn extension(self) -> &'static str {
        match self {
            MeshFormat::Obj => "obj",
            MeshFormat::Ply => "ply",
            MeshFormat::Stl => "stl",
            MeshFormat::Glb => "glb",
        }
    }

    /// Media type for HTTP responses and blob metadata.
    pub fn media_type(self) -> &'static str {
        match self {
            MeshFormat::Obj => "model/obj",
            MeshFormat::Ply => "application/x-ply",
            MeshFormat::Stl => "model/stl",
            MeshFormat::Glb => "model/gltf-binary",
        }
    }
}

impl std::fmt::Display for MeshFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.extension())
    }
}

/// Encode `mesh` in `format`.
pub fn encode(mesh: &Mesh, format: MeshFormat) -> Result<Vec<u8>, ExportError> {
    encode_with(mesh, None, format)
}

/// Encode `mesh` with `colours` (one linear RGBA colour per vertex, or none, and a base
/// colour) in `format`.
///
/// In GLB the material is `pbrMetallicRoughness` with `metallicFactor` 0 (glTF's default of 1
/// would make a photo-coloured object a metal) and `roughnessFactor` 0.9. glTF multiplies
/// `COLOR_0` by `baseColorFactor`, so with per-vertex colours the factor is white (each
/// vertex already holds its colour, the base colour included where the photo did not see it)
/// and the base colour is recorded in the material's `extras.base_colour`; without them the
/// factor is the base colour.
pub fn encode_coloured(mesh: &Mesh, colours: &Colours, format: MeshFormat) -> Result<Vec<u8>, ExportError> {
    colours.check(mesh.positions.len())?;
    encode_with(mesh, Some(colours), format)
}

fn encode_with(mesh: &Mesh, colours: Option<&Colours>, format: MeshFormat) -> Result<Vec<u8>, ExportError> {
    check_indices(mesh)?;
    match format {
        MeshFormat::Obj => Ok(to_obj(mesh, colours)),
        MeshFormat::Ply => to_ply(mesh, colours),
        MeshFormat::Stl => to_stl(mesh),
        MeshFormat::Glb => to_glb(mesh, colours),
    }
}

/// Encode `mesh` in the format its extension names and write it to `path`.
pub fn write(mesh: &Mesh, path: impl AsRef<Path>) -> Result<MeshFormat, ExportError> {
    let path = path.as_ref();
    let format = MeshFormat::from_path(path)?;
    let bytes = encode(mesh, format)?;
    std::fs::write(path, bytes).map_err(|source| ExportError::Io { path: path.display().to_string(), source })?;
    Ok(format)
}

fn check_indices(mesh: &Mesh) -> Result<(), ExportError> {
    let n = mesh.positions.len();
    for (triangle, t) in mesh.triangles.iter().enumerate() {
        if let Some(&vertex) = t.iter().find(|&&v| v as usize >= n) {
            return Err(ExportError::BadIndex { triangle, vertex, vertex_count: n });
        }
    }
    Ok(())
}

/// The mesh's normals if it has one per vertex, else freshly computed ones.
fn vertex_normals(mesh: &Mesh) -> std::borrow::Cow<'_, [[f32; 3]]> {
    if mesh.normals.len() == mesh.positions.len() {
        std::borrow::Cow::Borrowed(&mesh.normals)
    } else {
        let mut with_normals = Mesh { positions: mesh.positions.clone(), triangles: mesh.triangles.clone(), normals: Vec::new() };
        with_normals.recompute_normals();
        std::borrow::Cow::Owned(with_normals.normals)
    }
}

fn to_obj(mesh: &Mesh, colours: Option<&Colours>) -> Vec<u8> {
    let normals = vertex_normals(mesh);
    let mut out = String::with_capacity(mesh.positions.len() * 60 + mesh.triangles.len() * 40);
    out.push_str("# mono2mesh\n");
    // Writing to a String cannot fail.
    for (i, p) in mesh.positions.iter().enumerate() {
        match colours {
            None => {
                let _ = writeln!(out, "v {} {} {}", p[0], p[1], p[2]);
            }
            Some(colours) => {
                // sRGB in [0, 1], as MeshLab, Blender and tobj read `v x y z r g b`.
                let c = colours.vertex(i).map(linear_to_srgb);
                let _ = writeln!(out, "v {} {} {} {} {} {}", p[0], p[1], p[2], c[0], c[1], c[2]);
            }
        }
    }
    for n in normals.iter() {
        let _ = writeln!(out, "vn {} {} {}", n[0], n[1], n[2]);
    }
    for t in &mesh.triangles {
        let [a, b, c] = t.map(|i| i + 1);
        let _ = writeln!(out, "f {a}//{a} {b}//{b} {c}//{c}");
    }
    out.into_bytes()
}

fn to_ply(mesh: &Mesh, colours: Option<&Colours>) -> Result<Vec<u8>, ExportError> {
    let normals = vertex_normals(mesh);
    // sRGB bytes, the usual meaning of PLY's red/green/blue uchar properties.
    let colour_properties = if colours.is_some() { "property uchar red\nproperty uchar green\nproperty uchar blue\n" } else { "" };
    let header = format!(
        "ply\nformat binary_little_endian 1.0\ncomment mono2mesh\nelement vertex {}\n\
         property float x\nproperty float y\nproperty float z\n\
         property float nx\nproperty float ny\nproperty float nz\n{colour_properties}\
         element face {}\nproperty list uchar uint vertex_indices\nend_header\n",
        mesh.positions.len(),
        mesh.triangles.len()
    );
    let mut out = Vec::with_capacity(header.len() + mesh.positions.len() * 27 + mesh.triangles.len() * 13);
    out.extend_from_slice(header.as_bytes());
    for (i, (p, n)) in mesh.positions.iter().zip(normals.iter()).enumerate() {
        for v in p.iter().chain(n) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        if let Some(colours) = colours {
            let c = colours.vertex(i);
            out.extend_from_slice(&[linear_to_srgb_u8(c[0]), linear_to_srgb_u8(c[1]), linear_to_srgb_u8(c[2])]);
        }
    }
    for t in &mesh.triangles {
        out.push(3);
        for i in t {
            out.extend_from_slice(&i.to_le_bytes());
        }
    }
    Ok(out)
}

fn to_stl(mesh: &Mesh) -> Result<Vec<u8>, ExportError> {
    let count = u32::try_from(mesh.triangles.len()).map_err(|_| ExportError::TooLarge(MeshFormat::Stl))?;
    let mut out = Vec::with_capacity(84 + mesh.triangles.len() * 50);
    let mut header = [0u8; 80];
    // Must not start with "solid": readers would take the file for ASCII STL.
    let label = b"mono2mesh binary STL";
    header[..label.len()].copy_from_slice(label);
    out.extend_from_slice(&header);
    out.extend_from_slice(&count.to_le_bytes());
    for t in &mesh.triangles {
        let [a, b, c] = t.map(|i| mesh.positions[i as usize]);
        let e1 = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
        let e2 = [c[0] - a[0], c[1] - a[1], c[2] - a[2]];
        let n = [e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]];
        let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
        let n = if len > 0.0 { n.map(|v| v / len) } else { [0.0; 3] };
        for v in n.iter().chain(&a).chain(&b).chain(&c) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&0u16.to_le_bytes());
    }
    Ok(out)
}

const GLB_MAGIC: u32 = 0x4654_6C67; // "glTF"
const GLB_CHUNK_JSON: u32 = 0x4E4F_534A; // "JSON"
const GLB_CHUNK_BIN: u32 = 0x004E_4942; // "BIN\0"
const GL_FLOAT: u32 = 5126;
const GL_UNSIGNED_INT: u32 = 5125;
const GL_UNSIGNED_SHORT: u32 = 5123;
const GL_ARRAY_BUFFER: u32 = 34962;
const GL_ELEMENT_ARRAY_BUFFER: u32 = 34963;
const GL_TRIANGLES: u32 = 4;

fn to_glb(mesh: &Mesh, colours: Option<&Colours>) -> Result<Vec<u8>, ExportError> {
    let Some((min, max)) = mesh.bounds().filter(|_| !mesh.triangles.is_empty()) else {
        return Err(ExportError::Empty(MeshFormat::Glb));
    };
    let normals = vertex_normals(mesh);
    let vertex_count = mesh.positions.len();
    let index_count = mesh.triangles.len() * 3;
    let positions_len = vertex_count * 12;
    let indices_len = index_count * 4;
    // COLOR_0: normalized unsigned short RGBA, after the indices (4-byte aligned there).
    let vertex_colours = colours.filter(|c| !c.per_vertex.is_empty());
    let colours_len = if vertex_colours.is_some() { vertex_count * 8 } else { 0 };
    let binary_len = 2 * positions_len + indices_len + colours_len;
    if binary_len > u32::MAX as usize / 2 {
        return Err(ExportError::TooLarge(MeshFormat::Glb));
    }
    let mut binary = Vec::with_capacity(binary_len);
    for p in &mesh.positions {
        p.iter().for_each(|v| binary.extend_from_slice(&v.to_le_bytes()));
    }
    for n in normals.iter() {
        // glTF requires unit normals; a vertex no triangle uses gets an arbitrary unit one.
        let n = if n.iter().all(|&c| c == 0.0) { [0.0, 0.0, 1.0] } else { *n };
        n.iter().for_each(|v| binary.extend_from_slice(&v.to_le_bytes()));
    }
    for t in &mesh.triangles {
        t.iter().for_each(|i| binary.extend_from_slice(&i.to_le_bytes()));
    }
    if let Some(colours) = vertex_colours {
        for c in &colours.per_vertex {
            c.iter().for_each(|v| binary.extend_from_slice(&((v.clamp(0.0, 1.0) * 65535.0).round() as u16).to_le_bytes()));
        }
    }
    let mut json = serde_json::json!({
        "asset": { "version": "2.0", "generator": "mono2mesh" },
        "scene": 0,
        "scenes": [{ "nodes": [0] }],
        "nodes": [{ "mesh": 0 }],
        "meshes": [{ "primitives": [{
            "attributes": { "POSITION": 0, "NORMAL": 1 },
            "indices": 2,
            "mode": GL_TRIANGLES,
        }]}],
        "buffers": [{ "byteLength": binary_len }],
        "bufferViews": [
            { "buffer": 0, "byteOffset": 0, "byteLength": positions_len, "target": GL_ARRAY_BUFFER },
            { "buffer": 0, "byteOffset": positions_len, "byteLength": positions_len, "target": GL_ARRAY_BUFFER },
            { "buffer": 0, "byteOffset": 2 * positions_len, "byteLength": indices_len, "target": GL_ELEMENT_ARRAY_BUFFER },
        ],
        "accessors": [
            { "bufferView": 0, "componentType": GL_FLOAT, "count": vertex_count, "type": "VEC3", "min": min, "max": max },
            { "bufferView": 1, "componentType": GL_FLOAT, "count": vertex_count, "type": "VEC3" },
            { "bufferView": 2, "componentType": GL_UNSIGNED_INT, "count": index_count, "type": "SCALAR" },
        ],
    });
    if let Some(colours) = colours {
        let primitive = &mut json["meshes"][0]["primitives"][0];
        primitive["material"] = serde_json::json!(0);
        let factor = if vertex_colours.is_some() {
            primitive["attributes"]["COLOR_0"] = serde_json::json!(3);
            if let Some(views) = json["bufferViews"].as_array_mut() {
                views.push(serde_json::json!({ "buffer": 0, "byteOffset": 2 * positions_len + indices_len, "byteLength": colours_len, "target": GL_ARRAY_BUFFER }));
            }
            if let Some(accessors) = json["accessors"].as_array_mut() {
                accessors.push(serde_json::json!({ "bufferView": 3, "componentType": GL_UNSIGNED_SHORT, "normalized": true, "count": vertex_count, "type": "VEC4" }));
            }
            [1.0; 4]
        } else {
            colours.base_colour
        };
        json["materials"] = serde_json::json!([{
            "name": "mono2mesh colours",
            "pbrMetallicRoughness": { "baseColorFactor": factor, "metallicFactor": 0.0, "roughnessFactor": 0.9 },
            "extras": { "base_colour": colours.base_colour },
        }]);
    }
    let mut json_bytes = json.to_string().into_bytes();
    // Chunks are 4-byte aligned: JSON padded with spaces, binary with zeros.
    while json_bytes.len() % 4 != 0 {
        json_bytes.push(b' ');
    }
    while binary.len() % 4 != 0 {
        binary.push(0);
    }
    let total = 12 + 8 + json_bytes.len() + 8 + binary.len();
    let total = u32::try_from(total).map_err(|_| ExportError::TooLarge(MeshFormat::Glb))?;
    let mut out = Vec::with_capacity(total as usize);
    for word in [GLB_MAGIC, 2, total, json_bytes.len() as u32, GLB_CHUNK_JSON] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(&json_bytes);
    for word in [binary.len() as u32, GLB_CHUNK_BIN] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(&binary);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_names_and_paths() {
        assert_eq!(MeshFormat::from_extension(".GLB").unwrap(), MeshFormat::Glb);
        assert_eq!(MeshFormat::from_path("out/chair.obj").unwrap(), MeshFormat::Obj);
        assert!(matches!(MeshFormat::from_path("chair.fbx"), Err(ExportError::UnknownFormat(_))));
        assert!(matches!(MeshFormat::from_path("chair"), Err(ExportError::UnknownFormat(_))));
        for format in MeshFormat::ALL {
            assert_eq!(MeshFormat::from_extension(format.extension()).unwrap(), format);
        }
    }

    #[test]
    fn bad_meshes_are_errors() {
        let mesh = Mesh { positions: vec![[0.0; 3]; 2], triangles: vec![[0, 1, 2]], normals: Vec::new() };
        assert!(matches!(encode(&mesh, MeshFormat::Obj), Err(ExportError::BadIndex { vertex: 2, .. })));
        assert!(matches!(encode(&Mesh::default(), MeshFormat::Glb), Err(ExportError::Empty(MeshFormat::Glb))));
    }
}
