//! The twelve Pascal3D+ categories that pick a reconstruction specialist.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A Pascal3D+ object category. The serialised form is the lower-case Pascal name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Aeroplane,
    Bicycle,
    Boat,
    Bottle,
    Bus,
    Car,
    Chair,
    Diningtable,
    Motorbike,
    Sofa,
    Train,
    Tvmonitor,
}

impl Category {
    pub const ALL: [Category; 12] = [
        Category::Aeroplane,
        Category::Bicycle,
        Category::Boat,
        Category::Bottle,
        Category::Bus,
        Category::Car,
        Category::Chair,
        Category::Diningtable,
        Category::Motorbike,
        Category::Sofa,
        Category::Train,
        Category::Tvmonitor,
    ];

    /// The paper's five categories, where fine-tuning was studied first.
    pub const PAPER_FIVE: [Category; 5] = [
        Category::Chair,
        Category::Sofa,
        Category::Aeroplane,
        Category::Bicycle,
        Category::Motorbike,
    ];

    /// Pascal3D+ name, also our canonical string form.
    pub fn name(self) -> &'static str {
        match self {
            Category::Aeroplane => "aeroplane",
            Category::Bicycle => "bicycle",
            Category::Boat => "boat",
            Category::Bottle => "bottle",
            Category::Bus => "bus",
            Category::Car => "car",
            Category::Chair => "chair",
            Category::Diningtable => "diningtable",
            Category::Motorbike => "motorbike",
            Category::Sofa => "sofa",
            Category::Train => "train",
            Category::Tvmonitor => "tvmonitor",
        }
    }

    /// Dataset directory id: the ShapeNetCore synset where ShapeNet has the category
    /// (so real ShapeNet data drops in unchanged), else the WordNet noun offset in the
    /// same 8-digit form (bicycle is not in ShapeNetCore).
    pub fn synset(self) -> &'static str {
        match self {
            Category::Aeroplane => "02691156",
            Category::Bicycle => "02834778",
            Category::Boat => "04530566",
            Category::Bottle => "02876657",
            Category::Bus => "02924116",
            Category::Car => "02958343",
            Category::Chair => "03001627",
            Category::Diningtable => "04379243",
            Category::Motorbike => "03790512",
            Category::Sofa => "04256520",
            Category::Train => "04468005",
            Category::Tvmonitor => "03211117",
        }
    }

    /// ShapeNet's own name for the synset (its taxonomy JSON uses these).
    pub fn shapenet_name(self) -> &'static str {
        match self {
            Category::Aeroplane => "aeroplane",
            Category::Bicycle => "bicycle",
            Category::Boat => "watercraft",
            Category::Bottle => "bottle",
            Category::Bus => "bus",
            Category::Car => "car",
            Category::Chair => "chair",
            Category::Diningtable => "table",
            Category::Motorbike => "motorbike",
            Category::Sofa => "sofa",
            Category::Train => "train",
            Category::Tvmonitor => "display",
        }
    }

    pub fn from_synset(synset: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.synset() == synset)
    }

    pub fn index(self) -> usize {
        Category::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown category {0:?}: expected one of aeroplane, bicycle, boat, bottle, bus, car, chair, diningtable, motorbike, sofa, train, tvmonitor (or a synset id)")]
pub struct UnknownCategory(pub String);

impl FromStr for Category {
    type Err = UnknownCategory;

    /// Accepts the Pascal name, ShapeNet's name, or the synset id, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Category::ALL
            .into_iter()
            .find(|c| c.name() == wanted || c.shapenet_name() == wanted || c.synset() == wanted)
            .ok_or_else(|| UnknownCategory(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_synsets_and_parsing_agree() {
        for c in Category::ALL {
            assert_eq!(c.name().parse::<Category>().unwrap(), c);
            assert_eq!(c.synset().parse::<Category>().unwrap(), c);
            assert_eq!(c.shapenet_name().parse::<Category>().unwrap(), c);
            assert_eq!(Category::from_synset(c.synset()), Some(c));
            assert_eq!(Category::ALL[c.index()], c);
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.name()));
        }
        let mut synsets: Vec<_> = Category::ALL.iter().map(|c| c.synset()).collect();
        synsets.sort();
        synsets.dedup();
        assert_eq!(synsets.len(), 12, "synsets must be unique");
        assert!("giraffe".parse::<Category>().is_err());
        assert_eq!(" Chair ".parse::<Category>().unwrap(), Category::Chair);
    }
}
