//! Writes a contact sheet PNG:
//! `cargo run -p mono2mesh-catalog --example contact_sheet -- OUT.png [PER_ROW] [SEED] [TILE] [CATEGORIES,...]`.
use mono2mesh_core::Category;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let out = args.get(1).map(String::as_str).unwrap_or("contact_sheet.png");
    let per: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(6);
    let seed: u64 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(1);
    let tile: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(137);
    let categories: Vec<Category> = match args.get(5) {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => Category::ALL.to_vec(),
    };
    let sheet = mono2mesh_catalog::preview::contact_sheet(&categories, per, seed, tile)?;
    sheet.save(out)?;
    Ok(())
}
