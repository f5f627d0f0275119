//! Road, rail and water vehicles: cars, buses, trains and boats.

use super::{palette, Params, Surface};
use crate::builder::{Material, MeshBuilder, Section};

/// A boxy body along X: superellipse sections of `power`, from `x0` to `x1`, with
/// rounded ends of length `round`.
fn boxy_body(b: &mut MeshBuilder, x0: f32, x1: f32, y: f32, half_h: f32, half_w: f32, power: f32, round: f32, mat: u16) {
    let s = |x: f32, k: f32| Section { x, y, z: 0.0, half_h: half_h * k, half_w: half_w * k, power };
    let r = round.min((x1 - x0) * 0.3);
    b.loft(&[s(x0, 0.8), s(x0 + r * 0.3, 0.95), s(x0 + r, 1.0), s(x1 - r, 1.0), s(x1 - r * 0.3, 0.95), s(x1, 0.8)], 20, false, mat);
}

/// Four (or more) wheels at the given x positions, both sides.
fn axles(b: &mut MeshBuilder, xs: &[f32], half_track: f32, r: f32, tyre: f32, tyre_mat: u16, rim_mat: u16) {
    for &x in xs {
        for sz in [1.0f32, -1.0] {
            b.wheel([x, r, sz * half_track], [0.0, 0.0, 1.0], r, tyre, 0, tyre_mat, rim_mat);
        }
    }
}

pub fn car(p: &mut Params, b: &mut MeshBuilder) {
    let kind = p.choice("kind", &[("sedan", 0.3), ("hatchback", 0.2), ("suv", 0.2), ("pickup", 0.1), ("sports", 0.12), ("van", 0.08)]);
    let length = p.f("length", if kind == "sports" || kind == "hatchback" { 3.8 } else { 4.3 }, if kind == "hatchback" { 4.2 } else { 5.1 });
    let width = p.f("width", 1.7, 1.95);
    let wheel_r = p.f("wheel_radius", if kind == "suv" || kind == "pickup" { 0.36 } else { 0.3 }, if kind == "suv" || kind == "pickup" { 0.42 } else { 0.35 });
    let clearance = wheel_r * p.f("ground_clearance", 0.45, if kind == "suv" || kind == "pickup" { 0.9 } else { 0.6 });
    let body_h = p.f("body_height", if kind == "sports" { 0.45 } else { 0.55 }, if kind == "sports" { 0.55 } else { 0.75 });
    let cabin_h = match kind {
        "sports" => p.f("cabin_height", 0.3, 0.4),
        "suv" | "van" => p.f("cabin_height", 0.6, 0.8),
        _ => p.f("cabin_height", 0.42, 0.55),
    };
    let paint = p.textured(b, "paint_color", &palette::PAINTS, (0.5, 0.95), Surface::Paint);
    let glass = p.material(b, "glass_color", &palette::GLASS, (0.8, 1.0));
    let rubber = b.material(Material::matte(palette::BLACK_RUBBER[0]));
    let rim = p.textured(b, "rim_color", &palette::METALS, (0.6, 0.9), Surface::Metal);
    let light = b.material(Material::glossy([0.95, 0.92, 0.8], 0.9));

    let (x0, x1) = (-length * 0.5, length * 0.5);
    let body_y = clearance + body_h * 0.5;
    boxy_body(b, x0, x1, body_y, body_h * 0.5, width * 0.5, p.f("body_boxiness", 3.0, 6.0), 0.35, paint);

    // Cabin: glass-house loft between windshield base and rear window base.
    let roof_y = clearance + body_h + cabin_h;
    let (c0, c1) = match kind {
        "pickup" => (x1 - length * 0.62, x1 - length * 0.35),
        "van" => (x0 + 0.1, x1 - length * 0.2),
        "suv" => (x0 + 0.15, x1 - length * 0.35),
        "hatchback" => (x0 + 0.15, x1 - length * 0.38),
        "sports" => (x0 + length * 0.28, x1 - length * 0.4),
        _ => (x0 + length * 0.22, x1 - length * 0.38),
    };
    let slope_front = p.f("windshield_run", 0.3, if kind == "sports" { 0.9 } else { 0.7 });
    let slope_back = if kind == "suv" || kind == "van" || kind == "hatchback" || kind == "pickup" { p.f("rear_run", 0.05, 0.2) } else { p.f("rear_run", 0.3, 0.7) };
    let base_y = clearance + body_h;
    let cw = width * 0.45;
    let sec = |x: f32, top: f32, wk: f32| Section { x, y: (base_y + top) * 0.5, z: 0.0, half_h: (top - base_y) * 0.5, half_w: cw * wk, power: 5.0 };
    b.loft(
        &[sec(c0, base_y + 0.02, 0.95), sec(c0 + slope_back, roof_y, 0.88), sec(c1 - slope_front, roof_y, 0.88), sec(c1, base_y + 0.02, 0.95)],
        16,
        false,
        glass,
    );
    // Roof panel over the glass.
    b.block([(c0 + slope_back + c1 - slope_front) * 0.5, roof_y - 0.01, 0.0], [((c1 - slope_front) - (c0 + slope_back)) * 0.5, 0.025, cw * 0.86], paint);
    if kind == "pickup" {
        // Open bed walls behind the cab.
        let bed_top = base_y + 0.25;
        b.cuboid([x0 + 0.05, base_y - 0.05, width * 0.45], [c0 - 0.05, bed_top, width * 0.5 - 0.01], paint);
        b.cuboid([x0 + 0.05, base_y - 0.05, -width * 0.5 + 0.01], [c0 - 0.05, bed_top, -width * 0.45], paint);
        b.cuboid([x0 + 0.02, base_y - 0.05, -width * 0.5 + 0.01], [x0 + 0.08, bed_top, width * 0.5 - 0.01], paint);
    }
    if p.flag("roof_rack", if kind == "suv" { 0.5 } else { 0.1 }) {
        for sz in [1.0f32, -1.0] {
            b.block([(c0 + c1) * 0.5, roof_y + 0.05, sz * cw * 0.7], [(c1 - c0) * 0.35, 0.02, 0.02], rim);
        }
    }
    if kind == "sports" && p.flag("spoiler", 0.5) {
        b.block([x0 + 0.15, base_y + 0.15, 0.0], [0.12, 0.015, width * 0.42], paint);
        for sz in [1.0f32, -1.0] {
            b.block([x0 + 0.15, base_y + 0.07, sz * width * 0.3], [0.04, 0.07, 0.015], paint);
        }
    }
    // Headlights and tail lights.
    let tail_light = b.material(Material::glossy([0.7, 0.05, 0.05], 0.8));
    for sz in [1.0f32, -1.0] {
        b.block([x1 - 0.03, base_y - 0.12, sz * width * 0.36], [0.04, 0.05, 0.12], light);
        b.block([x0 + 0.03, base_y - 0.1, sz * width * 0.38], [0.04, 0.05, 0.1], tail_light);
    }
    let front_axle = x1 - p.f("front_overhang", 0.7, 1.0);
    let rear_axle = x0 + p.f("rear_overhang", 0.6, 1.1);
    axles(b, &[front_axle, rear_axle], width * 0.5 - 0.12, wheel_r, wheel_r * 0.32, rubber, rim);
}

pub fn bus(p: &mut Params, b: &mut MeshBuilder) {
    let length = p.f("length", 8.0, 13.0);
    let width = p.f("width", 2.3, 2.6);
    let decks = if p.flag("double_decker", 0.25) { 2 } else { 1 };
    let deck_h = p.f("deck_height", 1.9, 2.3);
    let wheel_r = p.f("wheel_radius", 0.45, 0.55);
    let clearance = wheel_r * 0.7;
    let paint = p.textured(b, "paint_color", &palette::PAINTS, (0.4, 0.8), Surface::Paint);
    let stripe = p.textured(b, "stripe_color", &palette::PAINTS, (0.4, 0.8), Surface::Paint);
    let glass = p.material(b, "glass_color", &palette::GLASS, (0.8, 1.0));
    let rubber = b.material(Material::matte(palette::BLACK_RUBBER[0]));
    let rim = p.textured(b, "rim_color", &palette::METALS, (0.5, 0.9), Surface::Metal);
    let height = deck_h * decks as f32 + 0.4;
    let (x0, x1) = (-length * 0.5, length * 0.5);
    boxy_body(b, x0, x1, clearance + height * 0.5, height * 0.5, width * 0.5, p.f("boxiness", 6.0, 10.0), 0.4, paint);
    // Window bands (slightly proud of the sides) and windshield.
    for d in 0..decks {
        let y = clearance + 0.4 + deck_h * d as f32 + deck_h * 0.62;
        let wh = deck_h * p.f("window_fraction", 0.2, 0.28);
        b.block([0.0, y, 0.0], [length * 0.47, wh, width * 0.5 + 0.01], glass);
    }
    b.block([x1 - 0.02, clearance + 0.4 + deck_h * 0.6, 0.0], [0.04, deck_h * 0.35, width * 0.45], glass);
    b.block([0.0, clearance + 0.55, 0.0], [length * 0.49, 0.08, width * 0.5 + 0.012], stripe);
    let axle_count = if length > 11.5 && p.flag("tag_axle", 0.5) { 3 } else { 2 };
    let mut xs = vec![x1 - p.f("front_overhang", 1.8, 2.6), x0 + p.f("rear_overhang", 2.2, 3.2)];
    if axle_count == 3 {
        xs.push(xs[1] + wheel_r * 2.3);
    }
    axles(b, &xs, width * 0.5 - 0.2, wheel_r, wheel_r * 0.35, rubber, rim);
    if p.flag("roof_unit", 0.4) {
        b.block([0.0, clearance + height + 0.12, 0.0], [length * 0.15, 0.14, width * 0.35], paint);
    }
}

pub fn train(p: &mut Params, b: &mut MeshBuilder) {
    // Few cars: a long consist shrinks to a stick after unit-diagonal normalisation.
    let cars = p.int("cars", 1, 2);
    let car_len = p.f("car_length", 12.0, 18.0);
    let width = p.f("width", 2.8, 3.2);
    let height = p.f("height", 3.3, 4.2);
    let nose = p.choice("nose", &[("bullet", 0.35), ("flat", 0.35), ("steam", 0.3)]);
    let paint = p.textured(b, "paint_color", &palette::PAINTS, (0.4, 0.8), Surface::Paint);
    let stripe = p.textured(b, "stripe_color", &palette::PAINTS, (0.4, 0.8), Surface::Paint);
    let glass = p.material(b, "glass_color", &palette::GLASS, (0.8, 1.0));
    let dark = b.material(Material::matte([0.1, 0.1, 0.1]));
    let metal = p.textured(b, "metal_color", &palette::METALS, (0.4, 0.8), Surface::Metal);
    let gap = 0.6;
    let bogie_h = 1.0;
    let total = cars as f32 * car_len + (cars as f32 - 1.0) * gap;
    let mut x = total * 0.5;
    for k in 0..cars {
        let (x0, x1) = (x - car_len, x);
        let lead = k == 0;
        let body_y = bogie_h + height * 0.5;
        if lead && nose == "steam" {
            // Boiler, cab, chimney.
            let cab_len = car_len * 0.25;
            b.cuboid([x0, bogie_h, -width * 0.5], [x0 + cab_len, bogie_h + height, width * 0.5], paint);
            b.frustum([x0 + cab_len, bogie_h + height * 0.45, 0.0], [x1, bogie_h + height * 0.45, 0.0], height * 0.33, height * 0.33, 20, dark);
            b.frustum([x1 - car_len * 0.15, bogie_h + height * 0.7, 0.0], [x1 - car_len * 0.15, bogie_h + height * 1.05, 0.0], 0.35, 0.45, 12, dark);
            b.cuboid([x0, bogie_h - 0.2, -width * 0.45], [x1, bogie_h + 0.1, width * 0.45], stripe);
            for i in 0..3 {
                let wx = x0 + cab_len + (x1 - x0 - cab_len) * (i as f32 + 0.7) / 3.6;
                for sz in [1.0f32, -1.0] {
                    b.wheel([wx, 0.75, sz * width * 0.38], [0.0, 0.0, 1.0], 0.75, 0.1, 10, metal, stripe);
                }
            }
        } else {
            let front_taper = if lead { if nose == "bullet" { car_len * 0.3 } else { 0.5 } } else { 0.3 };
            let s = |x: f32, k: f32, dy: f32| Section { x, y: body_y - dy, z: 0.0, half_h: height * 0.5 * k, half_w: width * 0.5 * k.max(0.7), power: 4.0 };
            let mut secs = vec![s(x0, 0.95, 0.0), s(x0 + 0.3, 1.0, 0.0), s(x1 - front_taper, 1.0, 0.0)];
            if lead && nose == "bullet" {
                secs.push(s(x1 - front_taper * 0.5, 0.75, height * 0.12));
                secs.push(s(x1, 0.2, height * 0.35));
            } else {
                secs.push(s(x1, 0.93, 0.0));
            }
            b.loft(&secs, 20, false, paint);
            b.block([(x0 + x1 - front_taper) * 0.5, body_y + height * 0.12, 0.0], [(car_len - front_taper) * 0.45, height * 0.12, width * 0.5 + 0.01], glass);
            b.block([(x0 + x1) * 0.5, body_y - height * 0.25, 0.0], [car_len * 0.49, 0.12, width * 0.5 + 0.012], stripe);
            if lead {
                let wx = if nose == "bullet" { x1 - front_taper * 0.75 } else { x1 - 0.05 };
                b.block([wx, body_y + height * 0.18, 0.0], [0.15, height * 0.12, width * 0.38], glass);
            }
            for bx in [x0 + car_len * 0.17, x1 - car_len * 0.17] {
                b.block([bx, bogie_h * 0.5, 0.0], [1.3, bogie_h * 0.35, width * 0.42], dark);
                for dx in [-0.8f32, 0.8] {
                    for sz in [1.0f32, -1.0] {
                        b.frustum([bx + dx, 0.45, sz * width * 0.3], [bx + dx, 0.45, sz * width * 0.42], 0.45, 0.45, 14, metal);
                    }
                }
            }
            if lead && nose == "flat" && p.flag("pantograph", 0.5) {
                let top = bogie_h + height;
                b.polyline_rod(&[[x0 + car_len * 0.4, top, 0.0], [x0 + car_len * 0.48, top + 0.8, 0.0], [x0 + car_len * 0.4, top + 1.2, 0.0]], 0.05, metal);
                b.block([x0 + car_len * 0.4, top + 1.2, 0.0], [0.15, 0.03, 0.8], metal);
            }
        }
        x -= car_len + gap;
    }
    // Couplings.
    let mut cx = total * 0.5 - car_len - gap * 0.5;
    for _ in 1..cars {
        b.block([cx, bogie_h + 0.3, 0.0], [gap * 0.6, 0.15, 0.2], dark);
        cx -= car_len + gap;
    }
}

pub fn boat(p: &mut Params, b: &mut MeshBuilder) {
    let kind = p.choice("kind", &[("motorboat", 0.35), ("sailboat", 0.35), ("ship", 0.3)]);
    let length = p.f("length", 5.0, 12.0);
    let beam = length * p.f("beam_ratio", if kind == "ship" { 0.12 } else { 0.25 }, if kind == "ship" { 0.18 } else { 0.38 });
    let draft = beam * p.f("hull_depth", 0.35, 0.6);
    let hull = p.textured(b, "hull_color", &[[0.9, 0.9, 0.92], [0.1, 0.15, 0.35], [0.6, 0.1, 0.1], [0.15, 0.15, 0.15]], (0.4, 0.9), Surface::Paint);
    let deck = p.textured(b, "deck_color", &[[0.75, 0.6, 0.4], [0.85, 0.85, 0.85], [0.5, 0.5, 0.5]], (0.1, 0.4), Surface::Wood);
    let cabin = p.textured(b, "cabin_color", &[[0.95, 0.95, 0.95], [0.8, 0.8, 0.75]], (0.3, 0.6), Surface::Paint);
    let glass = p.material(b, "glass_color", &palette::GLASS, (0.8, 1.0));
    let sail_mat = b.material(Material::matte([0.95, 0.94, 0.9]));
    let (x0, x1) = (-length * 0.5, length * 0.5);
    let deck_y = draft;
    // Hull: flat-topped half sections narrowing to a bow at +X; the stern is transom-cut.
    let stern_w = p.f("stern_width", 0.6, 0.95);
    let sec = |x: f32, w: f32, d: f32| Section { x, y: deck_y, z: 0.0, half_h: draft * d, half_w: beam * 0.5 * w, power: p_hull(kind) };
    b.loft(
        &[sec(x0, stern_w, 0.8), sec(x0 + length * 0.3, 1.0, 1.0), sec(x1 - length * 0.3, 0.95, 0.95), sec(x1 - length * 0.1, 0.6, 0.8), sec(x1, 0.05, 0.5)],
        20,
        true,
        hull,
    );
    // Deck plate sitting on the hull (slightly inset).
    b.block([x0 + length * 0.35, deck_y + 0.02, 0.0], [length * 0.33, 0.02, beam * 0.45 * stern_w.max(0.8)], deck);
    match kind {
        "sailboat" => {
            let mast_h = length * p.f("mast_height", 0.9, 1.4);
            let mast_x = x0 + length * p.f("mast_position", 0.5, 0.65);
            b.rod([mast_x, deck_y, 0.0], [mast_x, deck_y + mast_h, 0.0], length * 0.008, cabin);
            b.rod([mast_x, deck_y + mast_h * 0.12, 0.0], [x0 + length * 0.12, deck_y + mast_h * 0.12, 0.0], length * 0.006, cabin);
            let t = length * 0.004;
            // Main sail behind the mast, jib in front.
            b.extrude_xy(&[[mast_x - 0.02, deck_y + mast_h * 0.14], [x0 + length * 0.13, deck_y + mast_h * 0.14], [mast_x - 0.02, deck_y + mast_h * 0.97]], -t, t, sail_mat);
            if p.flag("jib", 0.7) {
                b.extrude_xy(&[[mast_x + 0.05, deck_y + 0.1 * mast_h], [x1 - length * 0.05, deck_y + 0.05 * mast_h], [mast_x + 0.05, deck_y + mast_h * 0.85]], -t, t, sail_mat);
            }
            if p.flag("cabin", 0.6) {
                b.block([mast_x - length * 0.18, deck_y + draft * 0.3, 0.0], [length * 0.12, draft * 0.3, beam * 0.3], cabin);
            }
        }
        "motorboat" => {
            let cab_len = length * p.f("cabin_length", 0.2, 0.4);
            let cab_h = draft * p.f("cabin_height", 0.6, 1.3);
            let cx = x0 + length * p.f("cabin_position", 0.35, 0.55);
            b.block([cx, deck_y + cab_h * 0.5, 0.0], [cab_len * 0.5, cab_h * 0.5, beam * 0.35], cabin);
            b.block([cx + cab_len * 0.45, deck_y + cab_h * 0.7, 0.0], [cab_len * 0.08, cab_h * 0.25, beam * 0.36], glass);
            if p.flag("outboard", 0.5) {
                let motor = b.material(Material::matte([0.1, 0.1, 0.1]));
                b.block([x0 - 0.15, deck_y - draft * 0.2, 0.0], [0.15, draft * 0.45, beam * 0.08], motor);
            }
        }
        _ => {
            let levels = p.int("superstructure_levels", 1, 4);
            let sx = x0 + length * p.f("bridge_position", 0.2, 0.7);
            let lh = draft * 0.45;
            for l in 0..levels {
                let k = 1.0 - l as f32 * 0.18;
                b.block([sx, deck_y + lh * (l as f32 + 0.5), 0.0], [length * 0.12 * k, lh * 0.5, beam * 0.4 * k], cabin);
                b.block([sx + length * 0.12 * k, deck_y + lh * (l as f32 + 0.6), 0.0], [0.02, lh * 0.18, beam * 0.38 * k], glass);
            }
            let funnels = p.int("funnels", 0, 2);
            for f in 0..funnels {
                let fx = sx - length * 0.18 - f as f32 * length * 0.1;
                b.frustum([fx, deck_y, 0.0], [fx - 0.1, deck_y + lh * (levels as f32 + 1.2), 0.0], beam * 0.12, beam * 0.1, 12, hull);
            }
            if p.flag("containers", 0.4) {
                let cont = p.textured(b, "container_color", &palette::PAINTS, (0.2, 0.5), Surface::Paint);
                b.block([sx + length * 0.22, deck_y + lh * 0.6, 0.0], [length * 0.12, lh * 0.6, beam * 0.38], cont);
            }
        }
    }
}

/// Hull section boxiness: ships are slab-sided, small boats rounder.
fn p_hull(kind: &str) -> f32 {
    if kind == "ship" {
        5.0
    } else {
        2.5
    }
}
