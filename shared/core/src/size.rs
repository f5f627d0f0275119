//! Real-world size of one asset: what a submitter may state (`height_mm`, or
//! `width_mm`, `height_mm` and `depth_mm`), else a typical size per category.
//!
//! Axes are the product's own, as a catalog states them and as glTF places the mesh:
//! height is up, width runs left to right seen from the front, depth runs front to back.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::Category;

/// The largest size accepted on any axis: 100 m (100 000 mm). Nothing in the twelve
/// categories comes close (an airliner is about 70 m long); anything above is a unit
/// mistake (metres typed as millimetres, micrometres...) that would produce an absurd asset.
pub const MAX_SIZE_MM: f64 = 100_000.0;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum SizeError {
    #[error("{field} must be a finite number of millimetres, got {value}")]
    NotFinite { field: &'static str, value: f64 },
    #[error("{field} must be more than 0 mm, got {value}")]
    NotPositive { field: &'static str, value: f64 },
    #[error("{field} of {value} mm is more than the largest accepted size ({MAX_SIZE_MM} mm = 100 m)")]
    TooLarge { field: &'static str, value: f64 },
    #[error("{field} must be a number of millimetres, got {text:?}")]
    NotANumber { field: &'static str, text: String },
    #[error("a size needs height_mm alone or all of width_mm, height_mm and depth_mm (got {0})")]
    Incomplete(String),
}

/// A checked real-world size in millimetres (finite, > 0, <= [`MAX_SIZE_MM`] on every axis).
///
/// Serialised as `{"height_mm": 900}` or `{"width_mm": 600, "height_mm": 900, "depth_mm": 550}`;
/// reading checks the same rules as the constructors, so a job or message can never carry an
/// absurd size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SizeFields", into = "SizeFields")]
pub enum RealSize {
    /// Only the height is known: the mesh is scaled uniformly to it (its proportions are the
    /// model's).
    Height { height_mm: f64 },
    /// The full bounding box: each axis is scaled to its own length.
    Box { width_mm: f64, height_mm: f64, depth_mm: f64 },
}

/// The wire form: three optional fields, as manifest columns and API fields name them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width_mm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height_mm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth_mm: Option<f64>,
}

fn check(field: &'static str, value: f64) -> Result<f64, SizeError> {
    if !value.is_finite() {
        Err(SizeError::NotFinite { field, value })
    } else if value <= 0.0 {
        Err(SizeError::NotPositive { field, value })
    } else if value > MAX_SIZE_MM {
        Err(SizeError::TooLarge { field, value })
    } else {
        Ok(value)
    }
}

impl RealSize {
    pub fn height(height_mm: f64) -> Result<RealSize, SizeError> {
        Ok(RealSize::Height { height_mm: check("height_mm", height_mm)? })
    }

    pub fn dimensions(width_mm: f64, height_mm: f64, depth_mm: f64) -> Result<RealSize, SizeError> {
        Ok(RealSize::Box {
            width_mm: check("width_mm", width_mm)?,
            height_mm: check("height_mm", height_mm)?,
            depth_mm: check("depth_mm", depth_mm)?,
        })
    }

    /// From optional fields (manifest columns, API fields): `None` when none is given.
    pub fn from_fields(fields: SizeFields) -> Result<Option<RealSize>, SizeError> {
        match (fields.width_mm, fields.height_mm, fields.depth_mm) {
            (None, None, None) => Ok(None),
            (None, Some(h), None) => RealSize::height(h).map(Some),
            (Some(w), Some(h), Some(d)) => RealSize::dimensions(w, h, d).map(Some),
            _ => {
                let named: Vec<&str> = [("width_mm", fields.width_mm), ("height_mm", fields.height_mm), ("depth_mm", fields.depth_mm)]
                    .into_iter()
                    .filter_map(|(name, v)| v.map(|_| name))
                    .collect();
                Err(SizeError::Incomplete(named.join(", ")))
            }
        }
    }

    /// For people: "910 mm high" or "600 x 900 x 550 mm (W x H x D)".
    pub fn label(self) -> String {
        match self {
            RealSize::Height { height_mm } => format!("{height_mm} mm high"),
            RealSize::Box { width_mm, height_mm, depth_mm } => {
                format!("{width_mm} x {height_mm} x {depth_mm} mm (W x H x D)")
            }
        }
    }

    pub fn height_mm(self) -> f64 {
        match self {
            RealSize::Height { height_mm } | RealSize::Box { height_mm, .. } => height_mm,
        }
    }

    /// The typical height of an object of `category`, used when the submitter gave no size.
    ///
    /// | category | height | what it stands for |
    /// |---|---|---|
    /// | aeroplane | 4.0 m | between a light aircraft (about 2.7 m) and a narrow-body airliner (about 12 m) |
    /// | bicycle | 1.05 m | adult bicycle, ground to handlebar |
    /// | boat | 2.0 m | small motorboat or sailing dinghy hull, without the mast |
    /// | bottle | 0.28 m | wine or 1 l drink bottle |
    /// | bus | 3.1 m | single-deck city bus |
    /// | car | 1.5 m | saloon / hatchback (SUVs about 1.7 m) |
    /// | chair | 0.85 m | dining chair with a back |
    /// | diningtable | 0.75 m | standard table height |
    /// | motorbike | 1.15 m | road motorcycle, ground to mirrors |
    /// | sofa | 0.85 m | upholstered sofa, ground to top of the back |
    /// | train | 4.0 m | rolling stock above the rail |
    /// | tvmonitor | 0.5 m | 24-32" screen on its stand |
    ///
    /// Height alone sets the scale (uniformly), because it is the one dimension catalog
    /// objects of a category share most; widths and depths vary far more (a 2- or 3-seat sofa).
    pub fn typical(category: Category) -> RealSize {
        let height_mm = match category {
            Category::Aeroplane => 4000.0,
            Category::Bicycle => 1050.0,
            Category::Boat => 2000.0,
            Category::Bottle => 280.0,
            Category::Bus => 3100.0,
            Category::Car => 1500.0,
            Category::Chair => 850.0,
            Category::Diningtable => 750.0,
            Category::Motorbike => 1150.0,
            Category::Sofa => 850.0,
            Category::Train => 4000.0,
            Category::Tvmonitor => 500.0,
        };
        RealSize::Height { height_mm }
    }
}

impl SizeFields {
    /// The fields as text (manifest cells, form fields): blank means absent, anything else
    /// must be a number of millimetres.
    pub fn parse(width_mm: Option<&str>, height_mm: Option<&str>, depth_mm: Option<&str>) -> Result<SizeFields, SizeError> {
        fn number(field: &'static str, text: Option<&str>) -> Result<Option<f64>, SizeError> {
            match text.map(str::trim).filter(|t| !t.is_empty()) {
                None => Ok(None),
                Some(t) => t.parse::<f64>().map(Some).map_err(|_| SizeError::NotANumber { field, text: t.to_string() }),
            }
        }
        Ok(SizeFields {
            width_mm: number("width_mm", width_mm)?,
            height_mm: number("height_mm", height_mm)?,
            depth_mm: number("depth_mm", depth_mm)?,
        })
    }
}

impl TryFrom<SizeFields> for RealSize {
    type Error = SizeError;

    fn try_from(fields: SizeFields) -> Result<Self, Self::Error> {
        RealSize::from_fields(fields)?.ok_or_else(|| SizeError::Incomplete("no field".into()))
    }
}

impl From<RealSize> for SizeFields {
    fn from(size: RealSize) -> Self {
        match size {
            RealSize::Height { height_mm } => SizeFields { height_mm: Some(height_mm), ..SizeFields::default() },
            RealSize::Box { width_mm, height_mm, depth_mm } => {
                SizeFields { width_mm: Some(width_mm), height_mm: Some(height_mm), depth_mm: Some(depth_mm) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_sizes_are_refused_with_the_field_named() {
        for (value, expect) in [(0.0, "more than 0"), (-5.0, "more than 0"), (f64::NAN, "finite"), (f64::INFINITY, "finite"), (1e9, "100 m")] {
            let error = RealSize::height(value).unwrap_err();
            assert!(error.to_string().contains(expect) && error.to_string().contains("height_mm"), "{value}: {error}");
        }
        let error = RealSize::dimensions(600.0, 900.0, 0.0).unwrap_err();
        assert_eq!(error, SizeError::NotPositive { field: "depth_mm", value: 0.0 });
        assert_eq!(RealSize::height(MAX_SIZE_MM).unwrap().height_mm(), MAX_SIZE_MM);
    }

    #[test]
    fn wire_form_reads_checked_and_round_trips() {
        let height: RealSize = serde_json::from_str(r#"{"height_mm": 900}"#).unwrap();
        assert_eq!(height, RealSize::Height { height_mm: 900.0 });
        let full: RealSize = serde_json::from_str(r#"{"width_mm": 600, "height_mm": 900, "depth_mm": 550}"#).unwrap();
        assert_eq!(full, RealSize::Box { width_mm: 600.0, height_mm: 900.0, depth_mm: 550.0 });
        for size in [height, full] {
            assert_eq!(serde_json::from_str::<RealSize>(&serde_json::to_string(&size).unwrap()).unwrap(), size);
        }
        for bad in [r#"{"height_mm": 0}"#, r#"{"height_mm": 1e9}"#, r#"{"width_mm": 600, "height_mm": 900}"#, r#"{}"#, r#"{"height_mm": 9, "colour": 1}"#] {
            assert!(serde_json::from_str::<RealSize>(bad).is_err(), "{bad}");
        }
        assert_eq!(RealSize::from_fields(SizeFields::default()).unwrap(), None);
        assert_eq!(height.label(), "900 mm high");
        assert_eq!(full.label(), "600 x 900 x 550 mm (W x H x D)");
        let error = RealSize::from_fields(SizeFields { width_mm: Some(1.0), ..SizeFields::default() }).unwrap_err();
        assert!(error.to_string().contains("width_mm"), "{error}");
    }

    #[test]
    fn text_fields_parse_blank_as_absent_and_name_what_is_not_a_number() {
        let fields = SizeFields::parse(None, Some(" 900 "), Some("")).unwrap();
        assert_eq!(RealSize::from_fields(fields).unwrap(), Some(RealSize::Height { height_mm: 900.0 }));
        let fields = SizeFields::parse(Some("600"), Some("900.5"), Some("5.5e2")).unwrap();
        assert_eq!(RealSize::from_fields(fields).unwrap(), Some(RealSize::Box { width_mm: 600.0, height_mm: 900.5, depth_mm: 550.0 }));
        let error = SizeFields::parse(None, Some("90cm"), None).unwrap_err();
        assert_eq!(error, SizeError::NotANumber { field: "height_mm", text: "90cm".into() });
        // "NaN" and "inf" parse as floats, and the checked constructor refuses them.
        let fields = SizeFields::parse(None, Some("NaN"), None).unwrap();
        assert!(matches!(RealSize::from_fields(fields), Err(SizeError::NotFinite { .. })));
    }

    #[test]
    fn every_category_has_a_plausible_typical_size() {
        for category in Category::ALL {
            let size = RealSize::typical(category);
            // Through the checked constructor: the table obeys the rules submissions do.
            assert_eq!(RealSize::height(size.height_mm()).unwrap(), size, "{category}");
            assert!((100.0..=10_000.0).contains(&size.height_mm()), "{category}");
        }
        assert!(RealSize::typical(Category::Bottle).height_mm() < RealSize::typical(Category::Chair).height_mm());
        assert!(RealSize::typical(Category::Chair).height_mm() < RealSize::typical(Category::Bus).height_mm());
    }
}
