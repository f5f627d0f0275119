//! Motorbikes: sport (full fairing), cruiser (long, low, high bars), naked/standard and
//! dirt bikes; solid or spoked wheels with fat tyres, fork, tank, seat, engine block,
//! exhaust, fenders, headlight and handlebars.

use super::{palette, Params, Surface};
use crate::builder::{Material, MeshBuilder, Section};
use crate::math::{add, lerp, normalize, scale, V3};

pub fn build(p: &mut Params, b: &mut MeshBuilder) {
    let kind = p.choice("kind", &[("sport", 0.3), ("cruiser", 0.25), ("standard", 0.25), ("dirt", 0.2)]);
    let wheel_r = p.f("wheel_radius", if kind == "dirt" { 0.34 } else { 0.29 }, if kind == "dirt" { 0.38 } else { 0.33 });
    let tyre = p.f("tyre_width", if kind == "dirt" { 0.045 } else { 0.055 }, if kind == "cruiser" { 0.085 } else { 0.07 });
    let wheelbase = p.f("wheelbase", if kind == "cruiser" { 1.5 } else { 1.3 }, if kind == "cruiser" { 1.75 } else { 1.5 });
    let paint = p.textured(b, "paint_color", &palette::PAINTS, (0.5, 0.9), Surface::Paint);
    let rubber = b.material(Material::matte(palette::BLACK_RUBBER[0]));
    let metal = p.textured(b, "metal_color", &palette::METALS, (0.6, 0.95), Surface::Metal);
    let engine_mat = p.textured(b, "engine_color", &[[0.2, 0.2, 0.22], [0.55, 0.55, 0.57]], (0.4, 0.8), Surface::Metal);
    let seat_mat = b.material(Material::glossy([0.07, 0.07, 0.07], 0.2));
    let light = b.material(Material::glossy([0.95, 0.95, 0.85], 0.9));

    let axle: V3 = [0.0, 0.0, 1.0];
    let rear: V3 = [-wheelbase * 0.5, wheel_r, 0.0];
    let front: V3 = [wheelbase * 0.5, wheel_r, 0.0];
    let spoked = kind == "dirt" || (kind == "cruiser" && p.flag("spoked_wheels", 0.5));
    let spokes = if spoked { 24 } else { 0 };
    b.wheel(rear, axle, wheel_r, tyre, spokes, rubber, metal);
    b.wheel(front, axle, wheel_r, tyre * 0.9, spokes, rubber, metal);

    // Steering head and fork.
    let rake = p.f("rake_deg", if kind == "cruiser" { 30.0 } else { 22.0 }, if kind == "cruiser" { 38.0 } else { 28.0 }).to_radians();
    let fork_dir = normalize([-rake.sin(), rake.cos(), 0.0]);
    let fork_len = wheel_r * p.f("fork_length", 1.7, 2.1);
    let head = add(front, scale(fork_dir, fork_len));
    for sz in [1.0f32, -1.0] {
        b.rod([front[0], front[1], sz * 0.08], [head[0], head[1], sz * 0.08], 0.022, metal);
    }
    b.block([head[0], head[1], 0.0], [0.04, 0.03, 0.11], metal);

    // Engine block between the wheels, low.
    let eng_c: V3 = [p.f("engine_x", -0.05, 0.1), wheel_r * p.f("engine_height", 0.8, 1.1), 0.0];
    let eng_half = [p.f("engine_length", 0.16, 0.24), p.f("engine_tall", 0.14, 0.2), p.f("engine_width", 0.12, 0.18)];
    b.block(eng_c, eng_half, engine_mat);
    if kind == "cruiser" {
        // V-twin cylinders.
        for (dx, tilt) in [(-0.07f32, -0.5f32), (0.07, 0.5)] {
            let base = [eng_c[0] + dx, eng_c[1] + eng_half[1], 0.0];
            b.frustum(base, add(base, [tilt * 0.25, 0.22, 0.0]), 0.07, 0.06, 12, engine_mat);
        }
    }

    // Frame spine from head to the swing-arm pivot, and the swing arm.
    let pivot: V3 = [eng_c[0] - eng_half[0], eng_c[1] + 0.02, 0.0];
    let seat_h = p.f("seat_height", if kind == "cruiser" { 0.62 } else { 0.78 }, if kind == "dirt" { 0.95 } else { 0.86 }) * (wheel_r / 0.31);
    b.polyline_rod(&[head, [eng_c[0] + eng_half[0] * 0.3, seat_h - 0.05, 0.0], [pivot[0], seat_h - 0.1, 0.0], pivot], 0.025, metal);
    for sz in [1.0f32, -1.0] {
        b.beam([pivot[0], pivot[1], sz * 0.07], [rear[0], rear[1], sz * 0.07], 0.02, metal);
        // Rear shock.
        b.rod([rear[0] + 0.1, rear[1] + 0.05, sz * 0.1], [pivot[0] - 0.1, seat_h - 0.05, sz * 0.1], 0.018, metal);
    }

    // Fuel tank: an ellipsoid in front of the seat.
    let tank_len = p.f("tank_length", 0.22, 0.32);
    let tank_c: V3 = [lerp(pivot, head, 0.6)[0], seat_h + 0.02, 0.0];
    b.ellipsoid(tank_c, [tank_len, p.f("tank_height", 0.08, 0.12), p.f("tank_width", 0.12, 0.17)], 16, paint);

    // Seat (and a tail section on sport bikes).
    let seat_len = p.f("seat_length", 0.35, 0.55);
    let seat_x1 = tank_c[0] - tank_len * 0.8;
    b.block([seat_x1 - seat_len * 0.5, seat_h, 0.0], [seat_len * 0.5, 0.04, 0.13], seat_mat);
    if kind == "sport" || kind == "dirt" {
        let x0 = seat_x1 - seat_len;
        let tail_end = rear[0] - 0.05;
        b.loft(
            &[
                Section { x: tail_end, y: seat_h + 0.1, z: 0.0, half_h: 0.03, half_w: 0.04, power: 3.0 },
                Section { x: x0, y: seat_h, z: 0.0, half_h: 0.08, half_w: 0.12, power: 3.0 },
                Section { x: seat_x1, y: seat_h - 0.04, z: 0.0, half_h: 0.09, half_w: 0.13, power: 3.0 },
            ],
            14,
            false,
            paint,
        );
    }

    // Fairing and headlight.
    if kind == "sport" {
        let nose = add(head, [0.12, -0.05, 0.0]);
        b.loft(
            &[
                Section { x: eng_c[0], y: eng_c[1] + 0.05, z: 0.0, half_h: 0.2, half_w: 0.18, power: 2.5 },
                Section { x: head[0] - 0.05, y: head[1] - 0.12, z: 0.0, half_h: 0.18, half_w: 0.17, power: 2.5 },
                Section { x: nose[0], y: nose[1], z: 0.0, half_h: 0.08, half_w: 0.1, power: 2.0 },
            ],
            16,
            false,
            paint,
        );
        b.ellipsoid([nose[0] + 0.01, nose[1], 0.0], [0.03, 0.04, 0.06], 10, light);
        let screen = b_glass(b);
        b.block([head[0] - 0.02, head[1] + 0.08, 0.0], [0.06, 0.01, 0.09], screen);
    } else {
        let lamp = add(head, [0.09, -0.06, 0.0]);
        b.frustum([lamp[0] - 0.06, lamp[1], 0.0], [lamp[0] + 0.02, lamp[1], 0.0], 0.04, 0.08, 14, metal);
        b.ellipsoid([lamp[0] + 0.02, lamp[1], 0.0], [0.015, 0.075, 0.075], 10, light);
    }

    // Handlebars.
    let bar_rise = match kind {
        "cruiser" => p.f("bar_rise", 0.12, 0.28),
        "sport" => p.f("bar_rise", -0.06, 0.0),
        _ => p.f("bar_rise", 0.04, 0.12),
    };
    let half = p.f("bar_half_width", 0.3, 0.4);
    let mid = add(head, [0.0, 0.05, 0.0]);
    for sz in [1.0f32, -1.0] {
        let end = [mid[0] - if kind == "cruiser" { 0.15 } else { 0.05 }, mid[1] + bar_rise, sz * half];
        b.polyline_rod(&[mid, [mid[0], mid[1] + bar_rise * 0.8, sz * half * 0.5], end], 0.012, metal);
        b.rod(end, [end[0], end[1], sz * (half - 0.12)], 0.018, rubber);
    }

    // Exhaust: one or two pipes along the right side.
    let pipes = p.int("exhaust_pipes", 1, 2);
    for k in 0..pipes {
        let y = eng_c[1] - eng_half[1] * 0.5 + k as f32 * 0.08 + if kind == "dirt" { 0.2 } else { 0.0 };
        let z = eng_half[2] + 0.05;
        b.polyline_rod(&[[eng_c[0] + eng_half[0], y, z * 0.6], [eng_c[0] - eng_half[0], y, z], [rear[0] + 0.05, y + 0.06, z + 0.02]], 0.022, metal);
        b.frustum([rear[0] + 0.2, y + 0.05, z + 0.02], [rear[0] - 0.1, y + 0.1, z + 0.02], 0.04, 0.045, 12, metal);
    }

    // Fenders.
    for (c, from, to) in [(front, 30.0f32, 150.0f32), (rear, 40.0, 130.0)] {
        let mut arc = Vec::new();
        for k in 0..=8 {
            let t = (from + (to - from) * k as f32 / 8.0).to_radians();
            arc.push([c[0] + t.cos() * (wheel_r + 0.03), c[1] + t.sin() * (wheel_r + 0.03), 0.0]);
        }
        if c[0] < 0.0 {
            for q in &mut arc {
                q[0] = 2.0 * c[0] - q[0];
            }
        }
        for pair in arc.windows(2) {
            b.beam(pair[0], pair[1], tyre * 0.9, paint);
        }
    }
}

fn b_glass(b: &mut MeshBuilder) -> u16 {
    b.material(Material::glossy([0.1, 0.12, 0.16], 0.9))
}
