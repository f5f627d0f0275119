//! Writes a contact sheet PNG: `cargo run -p mono2mesh-catalog --example contact_sheet -- OUT.png [PER_ROW] [SEED]`.
use mono2mesh_core::Category;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let out = args.get(1).map(String::as_str).unwrap_or("contact_sheet.png");
    let per: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(6);
    let seed: u64 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(1);
    let sheet = mono2mesh_catalog::preview::contact_sheet(&Category::ALL, per, seed, 137)?;
    sheet.save(out)?;
    Ok(())
}
