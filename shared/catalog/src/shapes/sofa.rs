//! Sofas: two- to four-seaters and L-shaped sectionals; box, rolled or no arms; low
//! or high backs, loose cushions or one slab; short legs or a skirt to the floor.

use super::{palette, Params, Surface};
use crate::builder::MeshBuilder;

pub fn build(p: &mut Params, b: &mut MeshBuilder) {
    // Mostly two- and three-seaters, some armchair-width and four-seat pieces.
    let seats: usize = p.choice("seats", &[("1", 0.1), ("2", 0.35), ("3", 0.4), ("4", 0.15)]).parse().unwrap_or(3);
    let seat_w = p.f("seat_width_each", 0.5, 0.7);
    let depth = p.f("depth", 0.75, 1.0);
    let leg_h = p.f("leg_height", 0.0, 0.15);
    let base_h = p.f("base_height", 0.18, 0.3);
    let cushion_h = p.f("cushion_height", 0.08, 0.16);
    let back_h = p.f("back_height", 0.3, 0.55);
    let back_t = p.f("back_thickness", 0.12, 0.25);
    let arm_style = p.choice("arms", &[("box", 0.45), ("rolled", 0.3), ("slim", 0.15), ("none", 0.1)]);
    let arm_w = if arm_style == "none" { 0.0 } else { p.f("arm_width", 0.08, 0.22) };
    let arm_h = p.f("arm_height_above_seat", 0.1, 0.28);
    let fabric = p.textured(b, "fabric_color", &palette::FABRICS, (0.0, 0.1), Surface::Fabric);
    let cushion_color = if p.flag("contrast_cushions", 0.25) {
        p.textured(b, "cushion_color", &palette::FABRICS, (0.0, 0.1), Surface::Fabric)
    } else {
        fabric
    };
    let leg_mat = p.textured(b, "leg_color", &palette::WOODS, (0.0, 0.4), Surface::Wood);
    let sectional = seats >= 2 && p.flag("sectional", 0.25);

    let inner_w = seats as f32 * seat_w;
    let total_w = inner_w + 2.0 * arm_w;
    let (x_front, x_back) = (depth * 0.5, -depth * 0.5);
    let base_top = leg_h + base_h;

    // Frame: base box, back.
    b.cuboid([x_back, leg_h, -total_w * 0.5], [x_front, base_top, total_w * 0.5], fabric);
    b.cuboid([x_back, base_top, -inner_w * 0.5], [x_back + back_t, base_top + cushion_h + back_h, inner_w * 0.5], fabric);

    // Seat cushions: one per seat, or one slab.
    let per_seat = p.flag("separate_cushions", 0.7);
    let gap = 0.01;
    let n = if per_seat { seats } else { 1 };
    for k in 0..n {
        let w = inner_w / n as f32;
        let z0 = -inner_w * 0.5 + k as f32 * w;
        b.cuboid([x_back + back_t, base_top, z0 + gap], [x_front, base_top + cushion_h, z0 + w - gap], cushion_color);
    }
    if p.flag("back_cushions", 0.5) {
        let bc_t = p.f("back_cushion_thickness", 0.08, 0.15);
        for k in 0..n {
            let w = inner_w / n as f32;
            let z0 = -inner_w * 0.5 + k as f32 * w;
            b.cuboid(
                [x_back + back_t, base_top + cushion_h, z0 + gap],
                [x_back + back_t + bc_t, base_top + cushion_h + back_h * 0.85, z0 + w - gap],
                cushion_color,
            );
        }
    }

    // Arms.
    for sz in [1.0f32, -1.0] {
        let z_in = sz * inner_w * 0.5;
        let z_out = sz * total_w * 0.5;
        let (zlo, zhi) = (z_in.min(z_out), z_in.max(z_out));
        let top = base_top + cushion_h + arm_h;
        match arm_style {
            "box" | "slim" => b.cuboid([x_back, leg_h, zlo], [x_front, top, zhi], fabric),
            "rolled" => {
                let r = arm_w * 0.6;
                b.cuboid([x_back, leg_h, zlo], [x_front, top - r * 0.5, zhi], fabric);
                b.frustum([x_back, top - r * 0.5, (zlo + zhi) * 0.5 + sz * r * 0.2], [x_front + r * 0.2, top - r * 0.5, (zlo + zhi) * 0.5 + sz * r * 0.2], r, r, 16, fabric);
            }
            _ => {}
        }
    }

    // L-shaped chaise on one side.
    if sectional {
        let ext = p.f("chaise_length", 0.5, 0.9);
        let side = if p.flag("chaise_left", 0.5) { -1.0 } else { 1.0 };
        let z_edge = side * inner_w * 0.5;
        let z_in = z_edge - side * seat_w;
        let (zlo, zhi) = (z_edge.min(z_in), z_edge.max(z_in));
        b.cuboid([x_front, leg_h, zlo], [x_front + ext, base_top, zhi], fabric);
        b.cuboid([x_front, base_top, zlo + gap], [x_front + ext, base_top + cushion_h, zhi - gap], cushion_color);
    }

    // Legs or a skirt.
    if leg_h > 0.03 {
        let leg = 0.025;
        let x_max = x_front;
        for (x, z) in [(x_max - 0.05, total_w * 0.5 - 0.05), (x_max - 0.05, -total_w * 0.5 + 0.05), (x_back + 0.05, total_w * 0.5 - 0.05), (x_back + 0.05, -total_w * 0.5 + 0.05)] {
            b.frustum([x, 0.0, z], [x, leg_h, z], leg * 0.6, leg, 8, leg_mat);
        }
    } else {
        b.cuboid([x_back + 0.02, 0.0, -total_w * 0.5 + 0.02], [x_front - 0.02, leg_h + 0.02, total_w * 0.5 - 0.02], leg_mat);
    }
}
