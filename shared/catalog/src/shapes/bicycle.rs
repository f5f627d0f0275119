//! Bicycles: road, mountain, city (step-through) and BMX; spoked wheels with tyres,
//! a tube frame (diamond or step-through), fork, drop/flat/riser bars, saddle,
//! cranks and pedals.

use super::{palette, Params, Surface};
use crate::builder::MeshBuilder;
use crate::math::{add, lerp, normalize, scale, sub, V3};

pub fn build(p: &mut Params, b: &mut MeshBuilder) {
    let kind = p.choice("kind", &[("road", 0.3), ("mountain", 0.3), ("city", 0.25), ("bmx", 0.15)]);
    let wheel_r = match kind {
        "bmx" => p.f("wheel_radius", 0.24, 0.27),
        "mountain" => p.f("wheel_radius", 0.33, 0.37),
        _ => p.f("wheel_radius", 0.33, 0.35),
    };
    let tyre = match kind {
        "mountain" => p.f("tyre_width", 0.028, 0.04),
        "bmx" => p.f("tyre_width", 0.025, 0.035),
        "city" => p.f("tyre_width", 0.02, 0.028),
        _ => p.f("tyre_width", 0.012, 0.018),
    };
    let wheelbase = p.f("wheelbase", if kind == "bmx" { 0.85 } else { 0.98 }, if kind == "bmx" { 0.95 } else { 1.12 });
    let frame_size = p.f("frame_size", if kind == "bmx" { 0.3 } else { 0.45 }, if kind == "bmx" { 0.36 } else { 0.6 });
    let tube_r = p.f("tube_radius", 0.012, if kind == "mountain" { 0.024 } else { 0.018 });
    let spokes = p.int("spokes", if kind == "bmx" { 12 } else { 16 }, if kind == "road" { 24 } else { 20 }) & !1;
    let frame = p.textured(b, "frame_color", &palette::PAINTS, (0.4, 0.8), Surface::Paint);
    let rubber = b.material(crate::builder::Material::matte(palette::BLACK_RUBBER[0]));
    let metal = p.textured(b, "metal_color", &palette::METALS, (0.5, 0.9), Surface::Metal);
    let saddle_mat = p.textured(b, "saddle_color", &[[0.08, 0.08, 0.08], [0.4, 0.25, 0.12], [0.7, 0.6, 0.45]], (0.1, 0.3), Surface::Plastic);

    let axle: V3 = [0.0, 0.0, 1.0];
    let rear: V3 = [-wheelbase * 0.5, wheel_r, 0.0];
    let front: V3 = [wheelbase * 0.5, wheel_r, 0.0];
    b.wheel(rear, axle, wheel_r, tyre, spokes, rubber, metal);
    b.wheel(front, axle, wheel_r, tyre, spokes, rubber, metal);

    // Frame key points.
    let bb: V3 = [rear[0] + wheelbase * p.f("bb_position", 0.4, 0.45), wheel_r - p.f("bb_drop", 0.04, 0.08), 0.0];
    let seat_angle = p.f("seat_angle_deg", 70.0, 75.0).to_radians();
    let seat_dir = normalize([-seat_angle.cos(), seat_angle.sin(), 0.0]);
    let seat_top = add(bb, scale(seat_dir, frame_size));
    let head_angle = p.f("head_angle_deg", 68.0, 74.0).to_radians();
    let head_dir = normalize([-head_angle.cos(), head_angle.sin(), 0.0]);
    // Fork crown sits up the steering axis from the front axle.
    let fork_len = wheel_r + 0.04;
    let fork_offset = 0.04;
    let crown = add(add(front, scale(head_dir, fork_len)), [-fork_offset * 0.3, 0.0, 0.0]);
    let head_len = p.f("head_tube_length", 0.1, 0.18);
    let head_top = add(crown, scale(head_dir, head_len));
    b.rod(crown, head_top, tube_r * 1.25, frame);

    let step_through = kind == "city" && p.flag("step_through", 0.6);
    // Down tube and top tube.
    b.rod(bb, lerp(crown, head_top, 0.2), tube_r * 1.1, frame);
    if step_through {
        let low = lerp(bb, seat_top, 0.3);
        b.polyline_rod(&[lerp(crown, head_top, 0.5), [lerp(bb, crown, 0.45)[0], low[1] + 0.05, 0.0], low], tube_r, frame);
    } else {
        let slope = if kind == "mountain" || kind == "bmx" { p.f("top_tube_slope", 0.05, 0.15) } else { p.f("top_tube_slope", 0.0, 0.05) };
        let st_join = lerp(bb, seat_top, 1.0 - slope - 0.05);
        b.rod(st_join, lerp(crown, head_top, 0.85), tube_r, frame);
    }
    b.rod(bb, seat_top, tube_r, frame);
    // Rear triangle: chain stays and seat stays on both sides.
    for sz in [1.0f32, -1.0] {
        let drop = [rear[0], rear[1], sz * 0.05];
        b.rod([bb[0], bb[1], sz * 0.02], drop, tube_r * 0.6, frame);
        b.rod(lerp(bb, seat_top, 0.9), drop, tube_r * 0.6, frame);
        // Fork blades.
        b.rod([crown[0], crown[1], sz * 0.03], [front[0], front[1], sz * 0.05], tube_r * if kind == "mountain" { 1.3 } else { 0.8 }, frame);
    }
    b.rod([crown[0], crown[1], -0.045], [crown[0], crown[1], 0.045], tube_r * 1.2, frame);

    // Seat post and saddle.
    let post_len = p.f("seat_post", 0.06, 0.2);
    let saddle_at = add(seat_top, scale(seat_dir, post_len));
    b.rod(seat_top, saddle_at, tube_r * 0.7, metal);
    let saddle_len = if kind == "city" { 0.26 } else { 0.24 };
    let saddle_w = if kind == "city" { 0.1 } else { 0.065 };
    b.ellipsoid([saddle_at[0] + 0.02, saddle_at[1] + 0.02, 0.0], [saddle_len * 0.5, 0.025, saddle_w], 12, saddle_mat);

    // Stem and handlebar.
    let stem_top = add(head_top, scale(head_dir, p.f("stem_rise", 0.02, 0.12)));
    b.rod(head_top, stem_top, tube_r * 0.8, metal);
    let reach = p.f("stem_reach", 0.04, 0.11);
    let bar_c = [stem_top[0] + reach, stem_top[1] + 0.01, 0.0];
    b.rod(stem_top, bar_c, tube_r * 0.8, metal);
    let bars = match kind {
        "road" => "drop",
        "bmx" => "riser",
        _ => p.choice("bars", &[("flat", 0.5), ("riser", 0.3), ("swept", 0.2)]),
    };
    p.values.insert("bars".into(), bars.into());
    let bar_r = 0.011;
    let half_w = match bars {
        "drop" => 0.21,
        "swept" => 0.28,
        _ => p.f("bar_half_width", 0.28, 0.36),
    };
    let grip = |b: &mut MeshBuilder, from: V3, to: V3| b.rod(from, to, bar_r * 1.6, rubber);
    match bars {
        "drop" => {
            for sz in [1.0f32, -1.0] {
                let path = [
                    bar_c,
                    [bar_c[0], bar_c[1], sz * half_w],
                    [bar_c[0] + 0.07, bar_c[1] - 0.02, sz * half_w],
                    [bar_c[0] + 0.06, bar_c[1] - 0.12, sz * half_w],
                    [bar_c[0] - 0.02, bar_c[1] - 0.13, sz * half_w],
                ];
                b.polyline_rod(&path, bar_r, metal);
            }
        }
        "riser" => {
            for sz in [1.0f32, -1.0] {
                let end = [bar_c[0] - 0.02, bar_c[1] + 0.1, sz * half_w];
                b.polyline_rod(&[bar_c, [bar_c[0], bar_c[1] + 0.05, sz * 0.1], end], bar_r, metal);
                grip(b, end, [end[0] - 0.01, end[1], sz * (half_w - 0.11)]);
            }
            b.rod([bar_c[0], bar_c[1] + 0.06, -0.12], [bar_c[0], bar_c[1] + 0.06, 0.12], bar_r * 0.8, metal);
        }
        "swept" => {
            for sz in [1.0f32, -1.0] {
                let end = [bar_c[0] - 0.16, bar_c[1] + 0.03, sz * half_w];
                b.polyline_rod(&[bar_c, [bar_c[0] + 0.02, bar_c[1] + 0.02, sz * 0.15], end], bar_r, metal);
                grip(b, end, sub(end, [-0.03, 0.0, sz * 0.1]));
            }
        }
        _ => {
            b.rod([bar_c[0], bar_c[1], -half_w], [bar_c[0], bar_c[1], half_w], bar_r, metal);
            for sz in [1.0f32, -1.0] {
                grip(b, [bar_c[0], bar_c[1], sz * half_w], [bar_c[0], bar_c[1], sz * (half_w - 0.11)]);
            }
        }
    }

    // Cranks, chainring and pedals.
    let crank = 0.17;
    let angle = p.f("crank_angle_deg", 0.0, 360.0).to_radians();
    let dir = [angle.cos(), angle.sin(), 0.0];
    b.frustum([bb[0], bb[1], -0.04], [bb[0], bb[1], 0.04], 0.025, 0.025, 10, metal);
    b.frustum([bb[0], bb[1], 0.045], [bb[0], bb[1], 0.052], 0.09, 0.09, 24, metal);
    for (sz, sign) in [(1.0f32, 1.0f32), (-1.0, -1.0)] {
        let arm_end = [bb[0] + sign * dir[0] * crank, bb[1] + sign * dir[1] * crank, sz * 0.07];
        b.beam([bb[0], bb[1], sz * 0.06], arm_end, 0.008, metal);
        b.block([arm_end[0], arm_end[1], sz * 0.1], [0.045, 0.008, 0.03], rubber);
    }

    // Mudguards and a rack on some city bikes; mountain bikes sometimes get a suspension fork look.
    if kind == "city" && p.flag("mudguards", 0.6) {
        for c in [rear, front] {
            let mut arc = Vec::new();
            for k in 0..=10 {
                let t = (20.0 + 140.0 * k as f32 / 10.0).to_radians();
                let (along, up) = if c[0] < 0.0 { (-t.cos(), t.sin()) } else { (t.cos(), t.sin()) };
                arc.push([c[0] + along * (wheel_r + 0.02), c[1] + up * (wheel_r + 0.02), 0.0]);
            }
            for pair in arc.windows(2) {
                b.beam(pair[0], pair[1], tyre * 1.1, frame);
            }
        }
    }
}
