//! ImageNet-1k class names (torchvision's order) and our mapping of each class to a
//! Pascal3D+ category, both from `data/imagenet_to_pascal12.tsv` (embedded at build time;
//! the file's header explains the mapping choices).

use std::sync::OnceLock;

use mono2mesh_core::Category;

pub const IMAGENET_CLASS_COUNT: usize = 1000;

const TABLE_TSV: &str = include_str!("../../data/imagenet_to_pascal12.tsv");

/// One row of the mapping table.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagenetClass {
    pub index: usize,
    pub name: &'static str,
    pub category: Option<Category>,
}

/// Parses the embedded table; rows that do not parse are reported, never silently dropped.
fn parse_table(tsv: &'static str) -> Result<Vec<ImagenetClass>, String> {
    let mut classes = Vec::with_capacity(IMAGENET_CLASS_COUNT);
    let rows = tsv.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).skip(1);
    for (position, line) in rows.enumerate() {
        let fields: Vec<&'static str> = line.split('\t').collect();
        let [index, name, category] = fields.as_slice() else {
            return Err(format!("row {position}: expected 3 tab-separated fields in {line:?}"));
        };
        let index: usize = index.parse().map_err(|_| format!("row {position}: bad index {index:?}"))?;
        if index != position {
            return Err(format!("row {position}: index {index} out of order"));
        }
        let category = match *category {
            "-" => None,
            other => Some(other.parse::<Category>().map_err(|e| format!("row {position}: {e}"))?),
        };
        classes.push(ImagenetClass { index, name, category });
    }
    if classes.len() != IMAGENET_CLASS_COUNT {
        return Err(format!("{} rows, expected {IMAGENET_CLASS_COUNT}", classes.len()));
    }
    Ok(classes)
}

fn table() -> &'static Result<Vec<ImagenetClass>, String> {
    static TABLE: OnceLock<Result<Vec<ImagenetClass>, String>> = OnceLock::new();
    TABLE.get_or_init(|| parse_table(TABLE_TSV))
}

/// All 1000 classes in index order, or why the embedded table is broken (a build defect
/// that the tests catch).
pub fn imagenet_classes() -> Result<&'static [ImagenetClass], &'static str> {
    table().as_ref().map(Vec::as_slice).map_err(String::as_str)
}

/// torchvision's name of class `index` (`"?"` outside 0..1000).
pub fn imagenet_class_name(index: usize) -> &'static str {
    imagenet_classes().ok().and_then(|c| c.get(index)).map_or("?", |c| c.name)
}

/// Our category for class `index`, if the class is one of them.
pub fn imagenet_category(index: usize) -> Option<Category> {
    imagenet_classes().ok().and_then(|c| c.get(index)).and_then(|c| c.category)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_every_class_in_order() {
        let classes = imagenet_classes().unwrap();
        assert_eq!(classes.len(), IMAGENET_CLASS_COUNT);
        assert_eq!(classes[0].name, "tench");
        assert_eq!(classes[999].name, "toilet tissue");
        assert_eq!(imagenet_class_name(404), "airliner");
        assert_eq!(imagenet_class_name(1000), "?");
    }

    #[test]
    fn every_category_has_classes_and_tricky_ones_are_right() {
        for category in Category::ALL {
            let count = (0..IMAGENET_CLASS_COUNT).filter(|&i| imagenet_category(i) == Some(category)).count();
            assert!(count >= 1, "{category} has no ImageNet class");
        }
        let by_name = |name: &str| {
            let classes = imagenet_classes().unwrap();
            classes.iter().find(|c| c.name == name).map(|c| c.category)
        };
        assert_eq!(by_name("plane"), Some(None), "the carpenter's plane is a tool");
        assert_eq!(by_name("studio couch"), Some(Some(Category::Sofa)));
        assert_eq!(by_name("streetcar"), Some(Some(Category::Train)));
        assert_eq!(by_name("trolleybus"), Some(Some(Category::Bus)));
        assert_eq!(by_name("tabby"), Some(None));
    }

    #[test]
    fn malformed_tables_are_rejected_with_the_row() {
        let missing_field = "index\tclass\tcategory\n0\ttench\n";
        assert!(parse_table(missing_field).unwrap_err().contains("row 0"));
        let bad_category = "index\tclass\tcategory\n0\ttench\tfish\n";
        assert!(parse_table(bad_category).unwrap_err().contains("fish"));
        let too_short = "index\tclass\tcategory\n0\ttench\t-\n";
        assert!(parse_table(too_short).unwrap_err().contains("expected 1000"));
    }
}
