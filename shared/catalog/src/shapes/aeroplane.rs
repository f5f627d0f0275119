//! Aeroplanes: airliners, regional props, business jets and fighters; varied fuselage
//! length and girth, wing span, sweep, taper, dihedral and mounting height; engines
//! under the wings, on the rear fuselage or in the nose; conventional, T or twin tails.

use super::{palette, Params, Surface};
use crate::builder::{MeshBuilder, Section};
use crate::math::V3;

pub fn build(p: &mut Params, b: &mut MeshBuilder) {
    let kind = p.choice("kind", &[("airliner", 0.4), ("regional", 0.2), ("bizjet", 0.2), ("fighter", 0.2)]);
    let fighter = kind == "fighter";
    let length = p.f("fuselage_length", 1.0, 1.3);
    let radius = length * p.f("fuselage_girth", 0.045, if fighter { 0.07 } else { 0.065 });
    let body = p.textured(b, "body_color", &[[0.92, 0.92, 0.93], [0.75, 0.76, 0.78], [0.4, 0.45, 0.4], [0.9, 0.9, 0.85]], (0.3, 0.7), Surface::Paint);
    let accent = p.textured(b, "tail_color", &palette::PAINTS, (0.3, 0.6), Surface::Paint);
    let dark = p.textured(b, "engine_color", &palette::METALS, (0.4, 0.8), Surface::Metal);
    let glass = b.material(crate::builder::Material::glossy([0.08, 0.1, 0.14], 0.9));

    // Fuselage: blunt nose, straight barrel, tail cone sweeping up.
    let nose_len = length * p.f("nose_fraction", 0.08, if fighter { 0.25 } else { 0.14 });
    let tail_len = length * p.f("tail_cone_fraction", 0.2, 0.32);
    let x_nose = length * 0.5;
    let x_tail = -length * 0.5;
    let upsweep = radius * p.f("tail_upsweep", 0.3, 0.8);
    let sec = |x: f32, y: f32, r: f32| Section { x, y, z: 0.0, half_h: r, half_w: r, power: 2.0 };
    let mut sections = vec![sec(x_tail, upsweep, radius * 0.12)];
    for k in 1..=4 {
        let t = k as f32 / 4.0;
        sections.push(sec(x_tail + tail_len * t, upsweep * (1.0 - t), radius * (0.12 + 0.88 * t.sqrt())));
    }
    sections.push(sec(x_nose - nose_len, 0.0, radius));
    for k in 1..=5 {
        let t = k as f32 / 5.0;
        let r = radius * (1.0 - t * t).max(0.0).sqrt().max(0.06);
        sections.push(sec(x_nose - nose_len + nose_len * t, -radius * 0.15 * t, r));
    }
    b.loft(&sections, 16, false, body);
    // Cockpit glazing.
    b.ellipsoid([x_nose - nose_len * 0.9, radius * 0.55, 0.0], [nose_len * if fighter { 0.9 } else { 0.35 }, radius * 0.45, radius * 0.6], 12, glass);

    // Wings: a tapered, swept, dihedral slab per side.
    let span = length * p.f("wing_span_ratio", if fighter { 0.55 } else { 0.8 }, if fighter { 0.75 } else { 1.15 });
    let root_chord = length * p.f("root_chord", if fighter { 0.35 } else { 0.16 }, if fighter { 0.5 } else { 0.24 });
    let taper = p.f("taper", if fighter { 0.1 } else { 0.25 }, if fighter { 0.3 } else { 0.5 });
    let sweep = p.f("sweep_deg", if kind == "regional" { 0.0 } else { 20.0 }, if fighter { 55.0 } else if kind == "regional" { 8.0 } else { 38.0 }).to_radians();
    let dihedral = p.f("dihedral_deg", -3.0, 7.0).to_radians();
    let mount = p.choice("wing_mount", &[("low", if kind == "regional" { 0.3 } else { 0.6 }), ("mid", 0.2), ("high", if kind == "regional" { 0.6 } else { 0.1 })]);
    let wing_y = match mount {
        "low" => -radius * 0.6,
        "mid" => 0.0,
        _ => radius * 0.75,
    };
    let wing_x = if fighter { x_tail + root_chord * 0.55 + tail_len * 0.1 } else { p.f("wing_position", -0.05, 0.08) * length };
    let wing_t = root_chord * 0.1;
    let half_span = span * 0.5;
    let tip_chord = root_chord * taper;
    let wing = |b: &mut MeshBuilder, root_x: f32, root_y: f32, root_c: f32, tip_c: f32, half: f32, sweep: f32, dihedral: f32, t: f32, m: u16| {
        for sz in [1.0f32, -1.0] {
            let tip_le = root_x + root_c * 0.5 - half * sweep.tan();
            let tip_y = root_y + half * dihedral.tan();
            let z = sz * half;
            let root_le: V3 = [root_x + root_c * 0.5, root_y, 0.0];
            let root_te: V3 = [root_x - root_c * 0.5, root_y, 0.0];
            let tip_lead: V3 = [tip_le, tip_y, z];
            let tip_trail: V3 = [tip_le - tip_c, tip_y, z];
            let up = |q: V3, k: f32| [q[0], q[1] + k, q[2]];
            b.hexahedron(
                [up(root_le, -t), up(root_te, -t), up(tip_trail, -t * 0.4), up(tip_lead, -t * 0.4), up(root_le, t), up(root_te, t), up(tip_trail, t * 0.4), up(tip_lead, t * 0.4)],
                m,
            );
        }
    };
    wing(b, wing_x, wing_y, root_chord, tip_chord, half_span, sweep, dihedral, wing_t * 0.5, body);

    // Engines.
    let engines = match kind {
        "fighter" => "internal",
        "regional" => p.choice("engines", &[("wing_props", 0.8), ("wing_2", 0.2)]),
        "bizjet" => p.choice("engines", &[("rear_2", 0.85), ("wing_2", 0.15)]),
        _ => p.choice("engines", &[("wing_2", 0.6), ("wing_4", 0.3), ("rear_2", 0.1)]),
    };
    if engines == "internal" {
        p.values.insert("engines".into(), "internal".into());
        // Exhaust nozzle(s) at the tail.
        let twin = p.flag("twin_nozzle", 0.4);
        for dz in if twin { vec![radius * 0.5, -radius * 0.5] } else { vec![0.0] } {
            b.frustum([x_tail + tail_len * 0.3, upsweep * 0.5, dz], [x_tail - 0.02, upsweep * 0.6, dz], radius * 0.5, radius * 0.42, 12, dark);
        }
    }
    let nacelle_r = radius * p.f("nacelle_size", 0.45, 0.7);
    let nacelle_len = nacelle_r * 4.5;
    let wing_point = |frac: f32| -> V3 {
        let z = half_span * frac;
        let le = wing_x + root_chord * 0.5 - z * sweep.tan();
        [le, wing_y + z * dihedral.tan(), z]
    };
    match engines {
        "wing_2" | "wing_4" | "wing_props" => {
            let fracs: &[f32] = if engines == "wing_4" { &[0.3, 0.6] } else { &[0.35] };
            for &f in fracs {
                for sz in [1.0f32, -1.0] {
                    let wp = wing_point(f);
                    let c = [wp[0] - nacelle_len * 0.2, wp[1] - nacelle_r * if mount == "high" { 0.3 } else { 1.2 }, sz * wp[2]];
                    b.frustum([c[0] + nacelle_len * 0.5, c[1], c[2]], [c[0] - nacelle_len * 0.5, c[1], c[2]], nacelle_r, nacelle_r * 0.7, 14, dark);
                    if engines == "wing_props" {
                        b.ellipsoid([c[0] + nacelle_len * 0.55, c[1], c[2]], [nacelle_r * 0.15, nacelle_r * 2.6, nacelle_r * 0.35], 8, dark);
                    }
                }
            }
        }
        "rear_2" => {
            for sz in [1.0f32, -1.0] {
                let c = [x_tail + tail_len * 1.1, radius * 0.5, sz * (radius + nacelle_r * 1.1)];
                b.frustum([c[0] + nacelle_len * 0.5, c[1], c[2]], [c[0] - nacelle_len * 0.5, c[1], c[2]], nacelle_r, nacelle_r * 0.75, 14, dark);
                b.beam([c[0], c[1], sz * radius * 0.5], c, nacelle_r * 0.25, body);
            }
        }
        _ => {}
    }

    // Tail.
    let tail = if engines == "rear_2" {
        p.choice("tail", &[("t_tail", 0.8), ("conventional", 0.2)])
    } else if fighter {
        p.choice("tail", &[("twin", 0.6), ("conventional", 0.4)])
    } else {
        p.choice("tail", &[("conventional", 0.8), ("t_tail", 0.2)])
    };
    let fin_h = length * p.f("fin_height", 0.12, 0.2);
    let fin_chord = length * p.f("fin_chord", 0.1, 0.16);
    let fin_sweep = p.f("fin_sweep_deg", 25.0, 50.0).to_radians();
    let fin_t = fin_chord * 0.06;
    let fin_root_x = x_tail + fin_chord * 0.5 + 0.01;
    let fin = |b: &mut MeshBuilder, z: f32, lean: f32| {
        let base_y = upsweep * 0.8;
        let top_y = base_y + radius * 0.5 + fin_h;
        let shift = (top_y - base_y) * fin_sweep.tan();
        let tc = fin_chord * 0.55;
        let root = [[fin_root_x + fin_chord * 0.5, base_y, z], [fin_root_x - fin_chord * 0.5, base_y, z]];
        let top = [[fin_root_x + fin_chord * 0.5 - shift, top_y, z + lean], [fin_root_x + fin_chord * 0.5 - shift - tc, top_y, z + lean]];
        let side = |q: V3, k: f32| [q[0], q[1], q[2] + k];
        b.hexahedron(
            [side(root[0], -fin_t), side(root[1], -fin_t), side(top[1], -fin_t * 0.5), side(top[0], -fin_t * 0.5), side(root[0], fin_t), side(root[1], fin_t), side(top[1], fin_t * 0.5), side(top[0], fin_t * 0.5)],
            accent,
        );
        (top_y, shift)
    };
    let stab_span = span * p.f("stabiliser_span", 0.28, 0.4);
    let stab_chord = fin_chord * 0.9;
    match tail {
        "twin" => {
            for sz in [1.0f32, -1.0] {
                fin(b, sz * radius * 0.7, sz * fin_h * 0.25);
            }
            wing(b, fin_root_x - 0.01, upsweep * 0.5, stab_chord, stab_chord * 0.4, stab_span * 0.5, 0.6, 0.0, fin_t * 0.8, body);
        }
        "t_tail" => {
            let (top_y, shift) = fin(b, 0.0, 0.0);
            wing(b, fin_root_x - shift - fin_chord * 0.05, top_y, stab_chord * 0.8, stab_chord * 0.4, stab_span * 0.45, 0.5, 0.0, fin_t * 0.8, accent);
        }
        _ => {
            fin(b, 0.0, 0.0);
            wing(b, fin_root_x - 0.01, upsweep * 0.8, stab_chord, stab_chord * 0.45, stab_span * 0.5, 0.55, p.f("stabiliser_dihedral_deg", 0.0, 8.0).to_radians(), fin_t * 0.8, body);
        }
    }

    // Landing gear down on some (as many ShapeNet planes have).
    if !fighter && p.flag("gear_down", 0.3) {
        let gear_h = radius * 1.1;
        b.rod([x_nose - nose_len * 1.2, -radius * 0.8, 0.0], [x_nose - nose_len * 1.2, -radius - gear_h, 0.0], radius * 0.07, dark);
        b.wheel([x_nose - nose_len * 1.2, -radius - gear_h, 0.0], [0.0, 0.0, 1.0], radius * 0.22, radius * 0.07, 0, dark, dark);
        for sz in [1.0f32, -1.0] {
            let x = wing_x - root_chord * 0.2;
            b.rod([x, wing_y, sz * radius * 1.2], [x, -radius - gear_h, sz * radius * 1.2], radius * 0.08, dark);
            b.wheel([x, -radius - gear_h, sz * radius * 1.2], [0.0, 0.0, 1.0], radius * 0.25, radius * 0.08, 0, dark, dark);
        }
    }
}
