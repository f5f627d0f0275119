//! Minimal 3-vector helpers (f32), enough for building and rendering meshes.

pub type V3 = [f32; 3];

#[inline]
pub fn add(a: V3, b: V3) -> V3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
#[inline]
pub fn sub(a: V3, b: V3) -> V3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
#[inline]
pub fn scale(a: V3, s: f32) -> V3 {
    [a[0] * s, a[1] * s, a[2] * s]
}
#[inline]
pub fn dot(a: V3, b: V3) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
#[inline]
pub fn cross(a: V3, b: V3) -> V3 {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}
#[inline]
pub fn length(a: V3) -> f32 {
    dot(a, a).sqrt()
}
/// Unit vector along `a`, or zero for a zero vector (degenerate input stays harmless).
#[inline]
pub fn normalize(a: V3) -> V3 {
    let l = length(a);
    if l > 1e-20 {
        scale(a, 1.0 / l)
    } else {
        [0.0; 3]
    }
}
#[inline]
pub fn lerp(a: V3, b: V3, t: f32) -> V3 {
    add(a, scale(sub(b, a), t))
}

/// Two unit vectors completing `axis` (assumed unit) to an orthonormal basis.
pub fn basis(axis: V3) -> (V3, V3) {
    let helper = if axis[1].abs() < 0.9 { [0.0, 1.0, 0.0] } else { [1.0, 0.0, 0.0] };
    let u = normalize(cross(axis, helper));
    let v = cross(axis, u);
    (u, v)
}

/// Rotate `p` about the Y axis by `angle` radians (right-handed).
pub fn rotate_y(p: V3, angle: f32) -> V3 {
    let (s, c) = angle.sin_cos();
    [c * p[0] + s * p[2], p[1], -s * p[0] + c * p[2]]
}

/// Rotate `p` about the Z axis by `angle` radians (right-handed).
pub fn rotate_z(p: V3, angle: f32) -> V3 {
    let (s, c) = angle.sin_cos();
    [c * p[0] - s * p[1], s * p[0] + c * p[1], p[2]]
}
