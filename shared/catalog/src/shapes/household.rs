//! Household objects: bottles, dining tables and TV monitors.

use super::{palette, Params, Surface};
use crate::builder::MeshBuilder;
use crate::math::rotate_y;

pub fn bottle(p: &mut Params, b: &mut MeshBuilder) {
    let kind = p.choice("kind", &[("wine", 0.3), ("water", 0.25), ("beer", 0.2), ("jug", 0.1), ("flask", 0.15)]);
    let height = p.f("height", 0.2, 0.35);
    let r = height * p.f("radius_ratio", if kind == "jug" { 0.2 } else { 0.11 }, if kind == "jug" { 0.3 } else { 0.17 });
    let neck_r = r * p.f("neck_ratio", 0.25, 0.45);
    let glass = p.material(
        b,
        "glass_color",
        &[[0.1, 0.3, 0.12], [0.35, 0.2, 0.08], [0.6, 0.75, 0.85], [0.85, 0.85, 0.88], [0.2, 0.35, 0.6]],
        (0.6, 1.0),
    );
    let cap = p.textured(b, "cap_color", &palette::PAINTS, (0.3, 0.7), Surface::Plastic);
    let label = p.textured(b, "label_color", &palette::FABRICS, (0.0, 0.2), Surface::Plastic);
    let body_frac = match kind {
        "wine" => p.f("body_fraction", 0.55, 0.65),
        "beer" => p.f("body_fraction", 0.5, 0.6),
        "water" => p.f("body_fraction", 0.65, 0.8),
        _ => p.f("body_fraction", 0.6, 0.75),
    };
    let shoulder = p.f("shoulder_length", 0.08, 0.2) * height;
    let body_h = height * body_frac;
    let neck_top = height * 0.94;
    let mut profile = vec![(0.0, r * 0.9), (0.01 * height, r)];
    if kind == "water" {
        // Ribbed plastic: a few waists.
        for k in 1..6 {
            let h = body_h * k as f32 / 6.0;
            profile.push((h - body_h * 0.04, r));
            profile.push((h, r * 0.93));
            profile.push((h + body_h * 0.04, r));
        }
    }
    profile.push((body_h, r));
    let shoulder_steps = 5;
    for k in 1..=shoulder_steps {
        let t = k as f32 / shoulder_steps as f32;
        let rr = if kind == "wine" || kind == "water" {
            neck_r + (r - neck_r) * (1.0 - t * t)
        } else {
            neck_r + (r - neck_r) * (1.0 - t).powf(0.6)
        };
        profile.push((body_h + shoulder * t, rr));
    }
    profile.push((neck_top, neck_r));
    profile.push((neck_top + 0.005 * height, neck_r * 1.12));
    b.lathe([0.0; 3], &profile, 20, glass);
    b.lathe([0.0, neck_top, 0.0], &[(0.0, neck_r * 1.15), (height * 0.06, neck_r * 1.15)], 16, cap);
    if p.flag("label", 0.7) {
        let lh = body_h * p.f("label_height", 0.3, 0.6);
        b.lathe([0.0, body_h * 0.2, 0.0], &[(0.0, r * 1.01), (lh, r * 1.01)], 20, label);
    }
    if kind == "jug" {
        b.torus([r * 0.95, body_h * 0.75, 0.0], [0.0, 0.0, 1.0], body_h * 0.22, r * 0.1, 16, 6, glass);
    }
}

pub fn table(p: &mut Params, b: &mut MeshBuilder) {
    let top_shape = p.choice("top", &[("rectangle", 0.55), ("round", 0.25), ("oval", 0.2)]);
    let length = p.f("length", 1.2, 2.2);
    let width = if top_shape == "round" { length.min(1.3) } else { p.f("width", 0.75, 1.1) };
    let length = if top_shape == "round" { width } else { length };
    let height = p.f("height", 0.72, 0.78);
    let thick = p.f("top_thickness", 0.025, 0.06);
    let base = p.choice("base", &[("four_legs", 0.6), ("pedestal", 0.2), ("trestle", 0.2)]);
    let wood = p.textured(b, "top_color", &palette::WOODS, (0.2, 0.6), Surface::Wood);
    let leg_mat = if p.flag("metal_base", 0.3) { p.textured(b, "base_color", &palette::METALS, (0.4, 0.8), Surface::Metal) } else { wood };
    let under = height - thick;
    match top_shape {
        "rectangle" => b.block([0.0, height - thick * 0.5, 0.0], [length * 0.5, thick * 0.5, width * 0.5], wood),
        _ => {
            // Round/oval: a lathe scaled along X for ovals.
            let fv = b.vertex_count();
            b.lathe([0.0, under, 0.0], &[(0.0, width * 0.5), (thick, width * 0.5)], 32, wood);
            let sx = length / width;
            b.transform_since(fv, |q| [q[0] * sx, q[1], q[2]]);
        }
    }
    let (hx, hz) = if top_shape == "rectangle" { (length * 0.5, width * 0.5) } else { (length * 0.35, width * 0.35) };
    match base {
        "four_legs" => {
            let leg = p.f("leg_thickness", 0.025, 0.05);
            let taper = p.f("leg_taper", 0.5, 1.0);
            let inset = p.f("leg_inset", 0.03, 0.12);
            let round_legs = p.flag("round_legs", 0.4);
            for (sx, sz) in [(1.0f32, 1.0f32), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)] {
                let x = sx * (hx - inset - leg);
                let z = sz * (hz - inset - leg);
                b.frustum([x, 0.0, z], [x, under, z], leg * taper, leg, if round_legs { 12 } else { 4 }, leg_mat);
            }
            if top_shape == "rectangle" && p.flag("apron", 0.6) {
                let ah = p.f("apron_height", 0.06, 0.12);
                let ax = hx - inset - leg;
                let az = hz - inset - leg;
                b.block([0.0, under - ah * 0.5, az], [ax, ah * 0.5, 0.012], wood);
                b.block([0.0, under - ah * 0.5, -az], [ax, ah * 0.5, 0.012], wood);
                b.block([ax, under - ah * 0.5, 0.0], [0.012, ah * 0.5, az], wood);
                b.block([-ax, under - ah * 0.5, 0.0], [0.012, ah * 0.5, az], wood);
            }
        }
        "pedestal" => {
            let col = p.f("column_radius", 0.05, 0.12);
            let foot = p.f("foot_radius", 0.25, 0.4).min(hz.max(0.25));
            b.lathe([0.0; 3], &[(0.0, foot), (0.04, foot), (0.12, col * 1.3), (under - 0.05, col), (under, col * 1.6)], 24, leg_mat);
            if top_shape == "rectangle" || top_shape == "oval" {
                // Long tables need a cross foot.
                b.block([0.0, 0.03, 0.0], [hx * 0.7, 0.03, 0.05], leg_mat);
            }
        }
        _ => {
            let panel_t = p.f("trestle_thickness", 0.04, 0.07);
            for sx in [1.0f32, -1.0] {
                let x = sx * (hx * 0.75);
                b.block([x, under * 0.5, 0.0], [panel_t, under * 0.5, 0.04], leg_mat);
                b.block([x, 0.03, 0.0], [panel_t * 1.5, 0.03, hz * 0.8], leg_mat);
                b.block([x, under - 0.03, 0.0], [panel_t * 1.2, 0.03, hz * 0.85], leg_mat);
            }
            b.block([0.0, under * 0.35, 0.0], [hx * 0.75, 0.03, 0.025], leg_mat);
        }
    }
}

pub fn tvmonitor(p: &mut Params, b: &mut MeshBuilder) {
    let kind = p.choice("kind", &[("flat", 0.6), ("monitor", 0.25), ("crt", 0.15)]);
    let aspect = match kind {
        "crt" => p.f("aspect", 1.25, 1.36),
        _ => p.f("aspect", 1.6, 1.8),
    };
    let width = p.f("width", 0.5, 1.2);
    let height = width / aspect;
    let depth = match kind {
        "crt" => width * p.f("depth_ratio", 0.8, 1.0),
        _ => p.f("panel_depth", 0.025, 0.07),
    };
    let bezel = p.f("bezel", 0.01, 0.05) * width;
    let case = p.textured(b, "case_color", &[[0.08, 0.08, 0.09], [0.2, 0.2, 0.22], [0.75, 0.75, 0.77], [0.9, 0.9, 0.9]], (0.2, 0.6), Surface::Plastic);
    let screen = p.material(b, "screen_color", &[[0.03, 0.04, 0.06], [0.1, 0.15, 0.3], [0.2, 0.25, 0.35]], (0.8, 1.0));
    let stand_kind = match kind {
        "crt" => "none",
        "monitor" => p.choice("stand", &[("neck", 0.8), ("feet", 0.2)]),
        _ => p.choice("stand", &[("neck", 0.45), ("feet", 0.35), ("none", 0.2)]),
    };
    p.values.insert("stand".into(), stand_kind.into());
    let stand_h = match stand_kind {
        "neck" => p.f("neck_height", 0.06, if kind == "monitor" { 0.18 } else { 0.1 }) * (width / 0.6),
        "feet" => 0.05,
        _ => 0.0,
    };
    let cy = stand_h + height * 0.5;
    // The screen faces +X: case, then the glass panel proud of its front.
    if kind == "crt" {
        b.block([0.0, cy, 0.0], [depth * 0.12, height * 0.5, width * 0.5], case);
        let back = [-depth * 0.9, cy - height * 0.05, 0.0];
        b.hexahedron(
            [
                [-depth * 0.12, cy - height * 0.48, -width * 0.48],
                [-depth * 0.12, cy - height * 0.48, width * 0.48],
                [back[0], back[1] - height * 0.3, width * 0.3],
                [back[0], back[1] - height * 0.3, -width * 0.3],
                [-depth * 0.12, cy + height * 0.48, -width * 0.48],
                [-depth * 0.12, cy + height * 0.48, width * 0.48],
                [back[0], back[1] + height * 0.3, width * 0.3],
                [back[0], back[1] + height * 0.3, -width * 0.3],
            ],
            case,
        );
        b.block([depth * 0.12 + 0.004, cy, 0.0], [0.006, height * 0.5 - bezel, width * 0.5 - bezel], screen);
    } else {
        b.block([0.0, cy, 0.0], [depth * 0.5, height * 0.5, width * 0.5], case);
        b.block([depth * 0.5 + 0.003, cy, 0.0], [0.004, height * 0.5 - bezel, width * 0.5 - bezel], screen);
        if p.flag("back_bulge", 0.4) {
            b.block([-depth * 0.5 - depth * 0.4, cy, 0.0], [depth * 0.4, height * 0.3, width * 0.3], case);
        }
    }
    match stand_kind {
        "neck" => {
            let plate = width * p.f("base_width", 0.25, 0.45);
            b.block([0.0, stand_h * 0.5, 0.0], [0.02, stand_h * 0.5, 0.04], case);
            if p.flag("round_base", 0.4) {
                b.lathe([0.0; 3], &[(0.0, plate * 0.5), (0.015, plate * 0.5)], 24, case);
            } else {
                b.block([0.0, 0.008, 0.0], [plate * 0.35, 0.008, plate * 0.5], case);
            }
        }
        "feet" => {
            let spread = width * p.f("feet_spread", 0.3, 0.45);
            for sz in [1.0f32, -1.0] {
                let fv = b.vertex_count();
                b.block([0.0, stand_h * 0.5, 0.0], [width * 0.08, stand_h * 0.5, 0.015], case);
                let angle = p.f("feet_angle_deg", -25.0, 25.0).to_radians() * sz;
                b.transform_since(fv, |q| {
                    let r = rotate_y(q, angle);
                    [r[0], r[1], r[2] + sz * spread]
                });
            }
        }
        _ => {}
    }
}
