//! Chairs: four legs, a pedestal or a sled base; with or without arms; solid, slatted,
//! ladder, rounded or split backs of varied height and tilt.

use super::{palette, Params, Surface};
use crate::builder::MeshBuilder;
use crate::math::{rotate_y, rotate_z};

pub fn build(p: &mut Params, b: &mut MeshBuilder) {
    let seat_h = p.f("seat_height", 0.40, 0.52);
    let width = p.f("seat_width", 0.40, 0.56);
    let depth = p.f("seat_depth", 0.38, 0.52);
    let thick = p.f("seat_thickness", 0.025, 0.09);
    let base = p.choice("base", &[("four_legs", 0.55), ("pedestal", 0.25), ("sled", 0.2)]);
    let wood = p.textured(b, "frame_color", &palette::WOODS, (0.0, 0.3), Surface::Wood);
    let metal = p.textured(b, "metal_color", &palette::METALS, (0.3, 0.8), Surface::Metal);
    let upholstered = p.flag("upholstered", 0.5);
    let fabric = p.textured(b, "fabric_color", &palette::FABRICS, (0.0, 0.15), Surface::Fabric);
    let seat_mat = if upholstered { fabric } else { wood };
    let frame = if base == "four_legs" { wood } else { metal };

    // Seat: a slab, rounded at the front for some chairs.
    let round_seat = base == "pedestal" && p.flag("round_seat", 0.4);
    if round_seat {
        b.lathe([0.0, seat_h - thick, 0.0], &[(0.0, width * 0.5), (thick, width * 0.5)], 24, seat_mat);
    } else {
        b.block([0.0, seat_h - thick * 0.5, 0.0], [depth * 0.5, thick * 0.5, width * 0.5], seat_mat);
    }
    let under = seat_h - thick;

    match base {
        "four_legs" => {
            let leg = p.f("leg_thickness", 0.015, 0.035);
            let splay = p.f("leg_splay", 0.0, 0.06);
            let round_legs = p.flag("round_legs", 0.4);
            let inset = leg * 1.2;
            for (sx, sz) in [(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)] {
                let top = [sx * (depth * 0.5 - inset), under, sz * (width * 0.5 - inset)];
                let foot = [top[0] + sx * splay, 0.0, top[2] + sz * splay];
                if round_legs {
                    b.frustum(foot, top, leg * 0.7, leg, 10, frame);
                } else {
                    b.beam(foot, top, leg, frame);
                }
            }
            if p.flag("stretchers", 0.45) {
                let h = p.f("stretcher_height", 0.08, 0.2);
                let t = leg * 0.6;
                let at = |sx: f32, sz: f32| {
                    let k = 1.0 - h / under;
                    [sx * (depth * 0.5 - inset + splay * k), h, sz * (width * 0.5 - inset + splay * k)]
                };
                b.beam(at(1.0, 1.0), at(-1.0, 1.0), t, frame);
                b.beam(at(1.0, -1.0), at(-1.0, -1.0), t, frame);
                b.beam(at(1.0, 1.0), at(1.0, -1.0), t, frame);
            }
        }
        "pedestal" => {
            let column_r = p.f("column_radius", 0.02, 0.04);
            let foot_h = 0.06;
            b.rod([0.0, foot_h, 0.0], [0.0, under, 0.0], column_r, frame);
            let star = p.flag("star_base", 0.7);
            let spread = p.f("base_radius", 0.24, 0.33);
            if star {
                let arms = p.int("base_arms", 4, 5);
                for k in 0..arms {
                    let a = std::f32::consts::TAU * k as f32 / arms as f32 + 0.3;
                    let tip = rotate_y([spread, foot_h * 0.6, 0.0], a);
                    b.beam([0.0, foot_h, 0.0], tip, 0.018, frame);
                    b.ellipsoid([tip[0], 0.025, tip[2]], [0.025, 0.025, 0.025], 8, frame);
                }
            } else {
                b.lathe([0.0, 0.0, 0.0], &[(0.0, spread * 0.8), (0.02, spread * 0.8), (foot_h, column_r * 1.5)], 24, frame);
            }
        }
        _ => {
            // Sled: two bent tube runners, one per side.
            let r = p.f("tube_radius", 0.01, 0.018);
            let reach = p.f("runner_overhang", 0.0, 0.05);
            for sz in [1.0f32, -1.0] {
                let z = sz * (width * 0.5 - r * 2.0);
                let path = [
                    [-depth * 0.5 + 0.03, under, z],
                    [-depth * 0.5 - reach, r, z],
                    [depth * 0.5 + reach, r, z],
                    [depth * 0.5 - 0.03, under, z],
                ];
                b.polyline_rod(&path, r, frame);
            }
        }
    }

    // Back.
    let back_h = p.f("back_height", 0.25, 0.6);
    let back_t = p.f("back_thickness", 0.02, 0.07);
    let tilt = p.f("back_tilt_deg", 0.0, 18.0).to_radians();
    let back_style = p.choice(
        "back",
        &[("solid", 0.3), ("slats", 0.2), ("ladder", 0.15), ("rounded", 0.2), ("split", 0.15)],
    );
    let first_vertex = b.vertex_count();
    let x0 = -depth * 0.5 + back_t * 0.5;
    let back_mat = if upholstered && back_style != "slats" && back_style != "ladder" { fabric } else { frame_or(wood, frame, base) };
    let post = back_t * 0.5;
    match back_style {
        "solid" => {
            b.block([x0, seat_h + back_h * 0.5, 0.0], [back_t * 0.5, back_h * 0.5, width * 0.5], back_mat);
        }
        "rounded" => {
            // An arch: straight sides with a half-ellipse top, extruded through the thickness.
            let top_r = width * 0.5;
            let arch_h = p.f("arch_height", 0.05, 0.2).min(back_h * 0.6);
            let mut poly = vec![[-top_r, 0.0], [top_r, 0.0]];
            for k in 0..=12 {
                let t = std::f32::consts::PI * k as f32 / 12.0;
                poly.push([top_r * t.cos(), back_h - arch_h + arch_h * t.sin()]);
            }
            let fv = b.vertex_count();
            b.extrude_xy(&poly, -back_t * 0.5, back_t * 0.5, back_mat);
            // Built in the XY plane: turn it so it spans Z, then place it.
            b.transform_since(fv, |q| {
                let r = rotate_y(q, std::f32::consts::FRAC_PI_2);
                [r[0] + x0, r[1] + seat_h, r[2]]
            });
        }
        "split" => {
            let gap = p.f("split_gap", 0.05, 0.15);
            let low = back_h * 0.35;
            b.block([x0, seat_h + low * 0.5, 0.0], [post, low * 0.5, width * 0.5 - 0.01], frame_or(wood, frame, base));
            b.block([x0, seat_h + low + gap + (back_h - low - gap) * 0.5, 0.0], [back_t * 0.5, (back_h - low - gap) * 0.5, width * 0.5], back_mat);
            for sz in [1.0f32, -1.0] {
                b.block([x0, seat_h + back_h * 0.5, sz * (width * 0.5 - post)], [post, back_h * 0.5, post], frame_or(wood, frame, base));
            }
        }
        style => {
            // Slats or ladder: two posts, a top rail and bars between.
            let m = frame_or(wood, frame, base);
            for sz in [1.0f32, -1.0] {
                b.block([x0, seat_h + back_h * 0.5, sz * (width * 0.5 - post)], [post, back_h * 0.5, post], m);
            }
            let rail = p.f("top_rail_height", 0.04, 0.1);
            b.block([x0, seat_h + back_h - rail * 0.5, 0.0], [post * 0.8, rail * 0.5, width * 0.5], m);
            let count = p.int("bars", 2, 5);
            let inner = width * 0.5 - 2.0 * post;
            if style == "slats" {
                for k in 0..count {
                    let z = -inner + 2.0 * inner * (k as f32 + 0.5) / count as f32;
                    let half_w = (inner / count as f32) * 0.35;
                    b.block([x0, seat_h + (back_h - rail) * 0.5, z], [post * 0.6, (back_h - rail) * 0.5, half_w], m);
                }
            } else {
                for k in 0..count {
                    let y = seat_h + (back_h - rail) * (k as f32 + 1.0) / (count as f32 + 1.0);
                    b.block([x0, y, 0.0], [post * 0.6, 0.015, inner], m);
                }
            }
        }
    }
    // Tilt the back about the rear edge of the seat.
    let pivot = [-depth * 0.5, seat_h];
    b.transform_since(first_vertex, |q| {
        let shifted = [q[0] - pivot[0], q[1] - pivot[1], q[2]];
        let r = rotate_z(shifted, tilt);
        [r[0] + pivot[0], r[1] + pivot[1], r[2]]
    });

    // Arms.
    let arms = p.choice("arms", &[("none", 0.55), ("rails", 0.3), ("panels", 0.15)]);
    let arm_h = p.f("arm_height", 0.17, 0.26);
    match arms {
        "rails" => {
            for sz in [1.0f32, -1.0] {
                let z = sz * (width * 0.5 + 0.02);
                b.block([0.0, seat_h + arm_h, z], [depth * 0.48, 0.015, 0.03], frame_or(wood, frame, base));
                b.block([depth * 0.35, seat_h + arm_h * 0.5, z], [0.015, arm_h * 0.5, 0.015], frame_or(wood, frame, base));
                b.block([-depth * 0.38, seat_h + arm_h * 0.5, z], [0.015, arm_h * 0.5, 0.015], frame_or(wood, frame, base));
            }
        }
        "panels" => {
            for sz in [1.0f32, -1.0] {
                let z = sz * (width * 0.5 + 0.03);
                b.block([0.0, seat_h - thick + (arm_h + thick) * 0.5, z], [depth * 0.5, (arm_h + thick) * 0.5, 0.03], back_mat);
            }
        }
        _ => {}
    }
}

/// Back and arm frames match the legs' material: wood on legged chairs, metal otherwise.
fn frame_or(wood: u16, frame: u16, base: &str) -> u16 {
    if base == "four_legs" {
        wood
    } else {
        frame
    }
}
