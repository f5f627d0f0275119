//! Strict readers for triangle meshes: Wavefront .obj, .off (Pascal3D+ CAD models,
//! ModelNet) and .ply (ASCII and binary). Polygons are fan-triangulated; anything
//! malformed is an error naming the line or element, never a silent guess.

use mono2mesh_geometry::Mesh;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum MeshReadError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("unsupported mesh file extension {0:?} (expected .obj, .off or .ply)")]
    UnknownFormat(String),
    #[error("{format} line {line}: {message}")]
    Syntax { format: &'static str, line: usize, message: String },
    #[error("ply: {0}")]
    Ply(String),
    #[error("face {face} refers to vertex {index}, but there are {count} vertices")]
    IndexOutOfRange { face: usize, index: i64, count: usize },
    #[error("the mesh has no faces")]
    Empty,
}

/// Reads a mesh, choosing the format by extension (case-insensitive).
pub fn read_mesh(path: impl AsRef<Path>) -> Result<Mesh, MeshReadError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| MeshReadError::Io { path: path.display().to_string(), source })?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "obj" => parse_obj(&String::from_utf8_lossy(&bytes)),
        "off" => parse_off(&String::from_utf8_lossy(&bytes)),
        "ply" => parse_ply(&bytes),
        _ => Err(MeshReadError::UnknownFormat(ext)),
    }
}

fn syntax(format: &'static str, line: usize, message: impl Into<String>) -> MeshReadError {
    MeshReadError::Syntax { format, line, message: message.into() }
}

fn parse_f32(format: &'static str, line: usize, s: &str) -> Result<f32, MeshReadError> {
    let v: f32 = s.parse().map_err(|_| syntax(format, line, format!("{s:?} is not a number")))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(syntax(format, line, format!("{s:?} is not finite")))
    }
}

/// Fan-triangulates a polygon of resolved vertex indices, checking their range.
fn push_polygon(mesh: &mut Mesh, polygon: &[i64], face: usize) -> Result<(), MeshReadError> {
    let count = mesh.positions.len();
    for &i in polygon {
        if i < 0 || i as usize >= count {
            return Err(MeshReadError::IndexOutOfRange { face, index: i, count });
        }
    }
    for k in 1..polygon.len().saturating_sub(1) {
        mesh.triangles.push([polygon[0] as u32, polygon[k] as u32, polygon[k + 1] as u32]);
    }
    Ok(())
}

fn non_empty(mesh: Mesh) -> Result<Mesh, MeshReadError> {
    if mesh.triangles.is_empty() {
        Err(MeshReadError::Empty)
    } else {
        Ok(mesh)
    }
}

/// Wavefront OBJ: `v` and `f` (with `v/vt/vn` forms and negative indices); normals,
/// texture coordinates, groups and materials are ignored.
pub fn parse_obj(text: &str) -> Result<Mesh, MeshReadError> {
    let mut mesh = Mesh::default();
    let mut faces = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        let mut parts = line.split_whitespace();
        match parts.next() {
            Some("v") => {
                let coords: Vec<&str> = parts.collect();
                if coords.len() < 3 {
                    return Err(syntax("obj", line_no, "a vertex needs x y z"));
                }
                let p = [
                    parse_f32("obj", line_no, coords[0])?,
                    parse_f32("obj", line_no, coords[1])?,
                    parse_f32("obj", line_no, coords[2])?,
                ];
                mesh.positions.push(p);
            }
            Some("f") => {
                let mut polygon = Vec::new();
                for token in parts {
                    let first = token.split('/').next().unwrap_or("");
                    let idx: i64 = first.parse().map_err(|_| syntax("obj", line_no, format!("bad face index {token:?}")))?;
                    let resolved = match idx {
                        0 => return Err(syntax("obj", line_no, "face index 0 (OBJ indices start at 1)")),
                        i if i > 0 => i - 1,
                        i => mesh.positions.len() as i64 + i,
                    };
                    polygon.push(resolved);
                }
                if polygon.len() < 3 {
                    return Err(syntax("obj", line_no, "a face needs at least 3 vertices"));
                }
                push_polygon(&mut mesh, &polygon, faces)?;
                faces += 1;
            }
            _ => {}
        }
    }
    non_empty(mesh)
}

/// OFF: `OFF`, then `nv nf ne`, vertices, faces `n i0 i1 ...` (trailing colours
/// ignored). Tolerates the header glued to the counts (`OFF8 6 0`, as in ModelNet).
pub fn parse_off(text: &str) -> Result<Mesh, MeshReadError> {
    // (line number, content) of non-empty, non-comment lines.
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split('#').next().unwrap_or("").trim()))
        .filter(|(_, l)| !l.is_empty());
    let (hl, header) = lines.next().ok_or_else(|| syntax("off", 1, "empty file"))?;
    let rest = header
        .strip_prefix("COFF")
        .or_else(|| header.strip_prefix("NOFF"))
        .or_else(|| header.strip_prefix("OFF"))
        .ok_or_else(|| syntax("off", hl, format!("expected OFF header, found {header:?}")))?
        .trim();
    let (cl, counts_line) = if rest.is_empty() { lines.next().ok_or_else(|| syntax("off", hl, "missing counts"))? } else { (hl, rest) };
    let counts: Vec<usize> = counts_line
        .split_whitespace()
        .map(|s| s.parse().map_err(|_| syntax("off", cl, format!("bad count {s:?}"))))
        .collect::<Result<_, _>>()?;
    if counts.len() < 2 {
        return Err(syntax("off", cl, "expected `vertices faces edges`"));
    }
    let (nv, nf) = (counts[0], counts[1]);
    let mut mesh = Mesh::default();
    for _ in 0..nv {
        let (ln, l) = lines.next().ok_or_else(|| syntax("off", cl, format!("file ends before its {nv} vertices")))?;
        let c: Vec<&str> = l.split_whitespace().collect();
        if c.len() < 3 {
            return Err(syntax("off", ln, "a vertex needs x y z"));
        }
        mesh.positions.push([parse_f32("off", ln, c[0])?, parse_f32("off", ln, c[1])?, parse_f32("off", ln, c[2])?]);
    }
    for face in 0..nf {
        let (ln, l) = lines.next().ok_or_else(|| syntax("off", cl, format!("file ends before its {nf} faces")))?;
        let nums: Vec<i64> = l
            .split_whitespace()
            .map(|s| s.parse::<i64>().map_err(|_| syntax("off", ln, format!("bad face entry {s:?}"))))
            .take_while(|r| r.is_ok())
            .collect::<Result<_, _>>()?;
        let n = *nums.first().ok_or_else(|| syntax("off", ln, "empty face"))? as usize;
        if n < 3 || nums.len() < n + 1 {
            return Err(syntax("off", ln, format!("face declares {n} vertices but lists {}", nums.len().saturating_sub(1))));
        }
        push_polygon(&mut mesh, &nums[1..=n], face)?;
    }
    non_empty(mesh)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scalar {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    F32,
    F64,
}

impl Scalar {
    fn parse(name: &str) -> Option<Scalar> {
        Some(match name {
            "char" | "int8" => Scalar::I8,
            "uchar" | "uint8" => Scalar::U8,
            "short" | "int16" => Scalar::I16,
            "ushort" | "uint16" => Scalar::U16,
            "int" | "int32" => Scalar::I32,
            "uint" | "uint32" => Scalar::U32,
            "float" | "float32" => Scalar::F32,
            "double" | "float64" => Scalar::F64,
            _ => return None,
        })
    }
    fn size(self) -> usize {
        match self {
            Scalar::I8 | Scalar::U8 => 1,
            Scalar::I16 | Scalar::U16 => 2,
            Scalar::I32 | Scalar::U32 | Scalar::F32 => 4,
            Scalar::F64 => 8,
        }
    }
}

#[derive(Debug, Clone)]
enum Property {
    Scalar { name: String, ty: Scalar },
    List { name: String, count: Scalar, item: Scalar },
}

#[derive(Debug, Clone)]
struct Element {
    name: String,
    count: usize,
    properties: Vec<Property>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum PlyFormat {
    Ascii,
    Little,
    Big,
}

/// Pulls values from ASCII tokens or binary bytes.
struct PlyReader<'a> {
    format: PlyFormat,
    bytes: &'a [u8],
    pos: usize,
    tokens: std::str::SplitAsciiWhitespace<'a>,
}

impl PlyReader<'_> {
    fn read(&mut self, ty: Scalar) -> Result<f64, MeshReadError> {
        if self.format == PlyFormat::Ascii {
            let t = self.tokens.next().ok_or_else(|| MeshReadError::Ply("file ends inside the data".into()))?;
            return t.parse::<f64>().map_err(|_| MeshReadError::Ply(format!("{t:?} is not a number")));
        }
        let n = ty.size();
        let b = self.bytes.get(self.pos..self.pos + n).ok_or_else(|| MeshReadError::Ply("file ends inside the binary data".into()))?;
        self.pos += n;
        let mut a = [0u8; 8];
        a[..n].copy_from_slice(b);
        if self.format == PlyFormat::Big {
            a[..n].reverse();
        }
        Ok(match ty {
            Scalar::I8 => f64::from(a[0] as i8),
            Scalar::U8 => f64::from(a[0]),
            Scalar::I16 => f64::from(i16::from_le_bytes([a[0], a[1]])),
            Scalar::U16 => f64::from(u16::from_le_bytes([a[0], a[1]])),
            Scalar::I32 => f64::from(i32::from_le_bytes([a[0], a[1], a[2], a[3]])),
            Scalar::U32 => f64::from(u32::from_le_bytes([a[0], a[1], a[2], a[3]])),
            Scalar::F32 => f64::from(f32::from_le_bytes([a[0], a[1], a[2], a[3]])),
            Scalar::F64 => f64::from_le_bytes(a),
        })
    }
}

/// PLY (ascii, binary_little_endian, binary_big_endian): `vertex` x/y/z and `face`
/// `vertex_indices` (or `vertex_index`); other elements and properties are skipped.
pub fn parse_ply(bytes: &[u8]) -> Result<Mesh, MeshReadError> {
    let marker = b"end_header";
    let header_end = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .ok_or_else(|| MeshReadError::Ply("no end_header".into()))?;
    let mut data_start = header_end + marker.len();
    // The header ends at the newline after end_header (\n or \r\n).
    while data_start < bytes.len() && (bytes[data_start] == b'\r' || bytes[data_start] == b' ') {
        data_start += 1;
    }
    if data_start < bytes.len() && bytes[data_start] == b'\n' {
        data_start += 1;
    }
    let header = std::str::from_utf8(&bytes[..header_end]).map_err(|_| MeshReadError::Ply("header is not text".into()))?;
    let mut lines = header.lines();
    if lines.next().map(str::trim) != Some("ply") {
        return Err(MeshReadError::Ply("missing `ply` magic".into()));
    }
    let mut format = None;
    let mut elements: Vec<Element> = Vec::new();
    for line in lines {
        let t: Vec<&str> = line.split_whitespace().collect();
        match t.as_slice() {
            ["format", f, _version] => {
                format = Some(match *f {
                    "ascii" => PlyFormat::Ascii,
                    "binary_little_endian" => PlyFormat::Little,
                    "binary_big_endian" => PlyFormat::Big,
                    other => return Err(MeshReadError::Ply(format!("unknown format {other:?}"))),
                })
            }
            ["element", name, count] => elements.push(Element {
                name: name.to_string(),
                count: count.parse().map_err(|_| MeshReadError::Ply(format!("bad element count {count:?}")))?,
                properties: Vec::new(),
            }),
            ["property", "list", count, item, name] => {
                let (count, item) = (
                    Scalar::parse(count).ok_or_else(|| MeshReadError::Ply(format!("unknown type {count:?}")))?,
                    Scalar::parse(item).ok_or_else(|| MeshReadError::Ply(format!("unknown type {item:?}")))?,
                );
                elements
                    .last_mut()
                    .ok_or_else(|| MeshReadError::Ply("property before any element".into()))?
                    .properties
                    .push(Property::List { name: name.to_string(), count, item });
            }
            ["property", ty, name] => {
                let ty = Scalar::parse(ty).ok_or_else(|| MeshReadError::Ply(format!("unknown type {ty:?}")))?;
                elements
                    .last_mut()
                    .ok_or_else(|| MeshReadError::Ply("property before any element".into()))?
                    .properties
                    .push(Property::Scalar { name: name.to_string(), ty });
            }
            ["comment", ..] | ["obj_info", ..] | [] => {}
            other => return Err(MeshReadError::Ply(format!("unexpected header line {:?}", other.join(" ")))),
        }
    }
    let format = format.ok_or_else(|| MeshReadError::Ply("no format line".into()))?;
    let body = &bytes[data_start..];
    let text_body = if format == PlyFormat::Ascii {
        std::str::from_utf8(body).map_err(|_| MeshReadError::Ply("ascii body is not text".into()))?
    } else {
        ""
    };
    let mut reader = PlyReader { format, bytes: body, pos: 0, tokens: text_body.split_ascii_whitespace() };
    let mut mesh = Mesh::default();
    let mut faces = 0usize;
    for el in &elements {
        for _ in 0..el.count {
            let mut p = [0.0f32; 3];
            for prop in &el.properties {
                match prop {
                    Property::Scalar { name, ty } => {
                        let v = reader.read(*ty)?;
                        if el.name == "vertex" {
                            match name.as_str() {
                                "x" => p[0] = v as f32,
                                "y" => p[1] = v as f32,
                                "z" => p[2] = v as f32,
                                _ => {}
                            }
                        }
                    }
                    Property::List { name, count, item } => {
                        let n = reader.read(*count)?;
                        if !(0.0..=1e6).contains(&n) {
                            return Err(MeshReadError::Ply(format!("list length {n} is not sensible")));
                        }
                        let mut list = Vec::with_capacity(n as usize);
                        for _ in 0..n as usize {
                            list.push(reader.read(*item)? as i64);
                        }
                        if el.name == "face" && (name == "vertex_indices" || name == "vertex_index") {
                            if list.len() < 3 {
                                return Err(MeshReadError::Ply(format!("face {faces} has {} vertices", list.len())));
                            }
                            push_polygon(&mut mesh, &list, faces)?;
                            faces += 1;
                        }
                    }
                }
            }
            if el.name == "vertex" {
                if p.iter().any(|v| !v.is_finite()) {
                    return Err(MeshReadError::Ply(format!("vertex {} is not finite", mesh.positions.len())));
                }
                mesh.positions.push(p);
            }
        }
    }
    non_empty(mesh)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUBE_OBJ: &str = "# cube\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0 0 1\nv 1 0 1\nv 1 1 1\nv 0 1 1\n\
        vn 0 0 1\nf 1//1 2//1 3//1 4//1\nf 5/1/1 8/1/1 7/1/1 6/1/1\nf 1 5 6 2\nf 2 6 7 3\nf 3 7 8 4\nf -4 -8 -5 -1\n";

    #[test]
    fn obj_polygons_slashes_and_negative_indices() {
        let m = parse_obj(CUBE_OBJ).unwrap();
        assert_eq!(m.positions.len(), 8);
        assert_eq!(m.triangles.len(), 12);
        assert_eq!(m.triangles[10], [4, 0, 3]);
        assert!(matches!(parse_obj("v 0 0 0\nf 1 2 3\n"), Err(MeshReadError::IndexOutOfRange { .. })));
        assert!(matches!(parse_obj("v 0 0 x\n"), Err(MeshReadError::Syntax { line: 1, .. })));
        assert!(matches!(parse_obj("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n"), Err(MeshReadError::Syntax { line: 4, .. })));
        assert!(matches!(parse_obj("v 0 0 0\n"), Err(MeshReadError::Empty)));
    }

    #[test]
    fn off_with_and_without_glued_header() {
        let text = "OFF\n# c\n4 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n3 0 1 2\n3 0 2 3 255 0 0\n";
        let m = parse_off(text).unwrap();
        assert_eq!((m.positions.len(), m.triangles.len()), (4, 2));
        let glued = "OFF4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n";
        assert_eq!(parse_off(glued).unwrap().triangles.len(), 2);
        assert!(matches!(parse_off("PLY\n"), Err(MeshReadError::Syntax { line: 1, .. })));
        assert!(matches!(parse_off("OFF\n3 1 0\n0 0 0\n1 0 0\n"), Err(MeshReadError::Syntax { .. })));
    }

    #[test]
    fn ply_ascii_and_binary_agree() {
        let ascii = "ply\nformat ascii 1.0\ncomment x\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n\
            property uchar red\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0 9\n1 0 0 9\n0 1 0.5 9\n3 0 1 2\n";
        let a = parse_ply(ascii.as_bytes()).unwrap();
        let mut bin = b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n\
            property uchar red\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
            .to_vec();
        for (p, red) in [([0f32, 0.0, 0.0], 9u8), ([1.0, 0.0, 0.0], 9), ([0.0, 1.0, 0.5], 9)] {
            for v in p {
                bin.extend_from_slice(&v.to_le_bytes());
            }
            bin.push(red);
        }
        bin.push(3);
        for i in [0i32, 1, 2] {
            bin.extend_from_slice(&i.to_le_bytes());
        }
        let b = parse_ply(&bin).unwrap();
        assert_eq!(a, b);
        assert_eq!(b.positions[2], [0.0, 1.0, 0.5]);
        bin.truncate(bin.len() - 2);
        assert!(matches!(parse_ply(&bin), Err(MeshReadError::Ply(_))));
    }

    #[test]
    fn real_meshes_from_shared_testdata() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/meshes");
        let files = ["bottle_pyrender_fuze.obj", "chair_mesh_to_sdf_lowpoly.obj"];
        let mut read_any = false;
        for f in files {
            let path = dir.join(f);
            if !path.exists() {
                eprintln!("SKIPPED: {} not present", path.display());
                continue;
            }
            let mesh = read_mesh(&path).unwrap();
            assert!(mesh.triangles.len() >= 500, "{f}: {} triangles", mesh.triangles.len());
            let grid = crate::voxelize::voxelize(&mesh, 32).unwrap();
            let n = grid.count_at_least(0.5);
            // A bottle is a solid of revolution: filled, and far from the whole cube.
            assert!(n > 1000 && n < 32 * 32 * 32 / 2, "{f}: {n} voxels");
            read_any = true;
        }
        if !read_any {
            eprintln!("SKIPPED: no shared test meshes found under {}", dir.display());
        }
    }
}
