//! The MAT reader and the Pascal3D+ importer on small files in the real format
//! (`tests/data/pascal3d/`, written by scipy.io.savemat; see make_fixtures.py there).

use mono2mesh_catalog::dataset::{Dataset, Split, SplitFractions};
use mono2mesh_catalog::mat::{Data, MatError, MatFile, NumericClass};
use mono2mesh_catalog::mesh_io::read_mesh;
use mono2mesh_catalog::pascal3d::{
    crop_box, import_pascal3d, normalise_cad, read_annotation, ImportConfig, ImportReport, SampleRecord, SkipReason, SplitFrom, REPORT_FILE, SAMPLES_DIR,
};
use mono2mesh_catalog::voxelize::voxelize;
use mono2mesh_core::Category;
use std::path::{Path, PathBuf};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pascal3d")
}

fn release() -> PathBuf {
    data().join("release1.1")
}

fn quiet(_: mono2mesh_catalog::pascal3d::Progress) {}

#[test]
fn mat_reader_reads_every_class_scipy_writes() {
    let plain = MatFile::open(data().join("types.mat")).unwrap();
    let packed = MatFile::open(data().join("types_compressed.mat")).unwrap();
    assert!(plain.header.starts_with("MATLAB 5.0 MAT-file"), "{}", plain.header);
    assert_eq!(plain.variables, packed.variables, "compressed and plain files must read the same");
    let names: Vec<&str> = plain.variables.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["d", "i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64", "f32", "flag", "cplx", "c", "chars", "uni", "st", "e", "es"]);
    let f = &plain;
    let d = f.get("d").unwrap();
    assert_eq!(d.dims, vec![2, 3]);
    // Column-major: [[1 2 3]; [4 5 6]] is stored 1 4 2 5 3 6.
    assert_eq!(d.as_f64s().unwrap(), &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    for (name, class, values) in [
        ("i8", NumericClass::Int8, [-128.0, 127.0]),
        ("u8", NumericClass::Uint8, [0.0, 255.0]),
        ("i16", NumericClass::Int16, [-32768.0, 32767.0]),
        ("u16", NumericClass::Uint16, [0.0, 65535.0]),
        ("i32", NumericClass::Int32, [-2147483648.0, 2147483647.0]),
        ("u32", NumericClass::Uint32, [0.0, 4294967295.0]),
        ("i64", NumericClass::Int64, [-(2f64.powi(53)), 2f64.powi(53)]),
        ("u64", NumericClass::Uint64, [0.0, 2f64.powi(53)]),
        ("f32", NumericClass::Single, [0.5, -1.25]),
    ] {
        let v = f.get(name).unwrap();
        assert_eq!(v.as_numeric().unwrap().class, class, "{name}");
        assert_eq!(v.as_f64s().unwrap(), &values, "{name}");
    }
    let flag = f.get("flag").unwrap().as_numeric().unwrap();
    assert!(flag.logical);
    assert_eq!(flag.real, [1.0, 0.0, 1.0]);
    let cplx = f.get("cplx").unwrap().as_numeric().unwrap();
    assert_eq!(cplx.real, [1.0, -3.5]);
    assert_eq!(cplx.imag.as_deref(), Some(&[2.0, -0.5][..]));
    let cell = f.get("c").unwrap().as_cell().unwrap();
    assert_eq!(cell.len(), 3);
    assert_eq!(cell[0].as_scalar(), Some(1.0));
    assert_eq!(cell[1].as_string().as_deref(), Some("ab"));
    assert_eq!(cell[2].dims, vec![2, 2]);
    assert_eq!(cell[2].as_f64s().unwrap(), &[1.0, 3.0, 2.0, 4.0]);
    let chars = f.get("chars").unwrap();
    assert_eq!(chars.dims, vec![2, 3]);
    assert_eq!(chars.char_rows().unwrap(), ["abc", "def"]);
    assert_eq!(chars.as_string(), None, "a 2-row char array is not one string");
    assert_eq!(f.get("uni").unwrap().as_string().as_deref(), Some("h\u{e9}llo \u{2713}"));
    let st = f.get("st").unwrap();
    assert_eq!(st.dims, vec![1, 2]);
    assert_eq!(st.as_struct().unwrap().fields, ["a", "b"]);
    assert_eq!(st.field_of(0, "a").unwrap().as_scalar(), Some(1.5));
    assert_eq!(st.field_of(0, "b").unwrap().as_string().as_deref(), Some("x"));
    assert_eq!(st.field_of(1, "a").unwrap().as_f64s().unwrap(), &[1.0, 2.0]);
    let inner = st.field_of(1, "b").unwrap().field("inner").unwrap();
    assert_eq!((inner.as_numeric().unwrap().class, inner.as_scalar()), (NumericClass::Int16, Some(-7.0)));
    assert!(st.field("a").is_none(), "field() is for 1x1 structs only");
    assert!(f.get("e").unwrap().is_empty());
    let es = f.get("es").unwrap();
    assert!(matches!(es.data, Data::Char(ref c) if c.is_empty()));
    assert_eq!(es.as_string().as_deref(), Some(""));
}

#[test]
fn annotation_records_parse_with_their_structure() {
    let ann = release().join("Annotations");
    let pascal = read_annotation(&ann.join("chair_pascal/2008_000123.mat")).unwrap();
    assert_eq!(pascal.filename, "2008_000123.jpg");
    assert_eq!((pascal.width, pascal.height), (Some(64), Some(48)));
    let classes: Vec<&str> = pascal.objects.iter().map(|o| o.class.as_str()).collect();
    assert_eq!(classes, ["person", "chair", "chair"]);
    let person = &pascal.objects[0];
    assert_eq!((person.index, person.viewpoint, person.cad_index), (1, None, None));
    assert!(pascal.objects[1].occluded && !pascal.objects[1].truncated);
    let chair = &pascal.objects[2];
    assert_eq!(chair.bbox, Some([32.0, 6.0, 62.0, 46.0]));
    assert_eq!(chair.cad_index, Some(1));
    let vp = chair.viewpoint.unwrap();
    assert_eq!((vp.azimuth, vp.elevation, vp.theta, vp.distance, vp.fine), (300.0, 8.0, 2.0, 2.8, true));
    assert_eq!((vp.focal, vp.viewport), (Some(1.0), Some(3000.0)));

    // The uncompressed file; `difficult` saved as a MATLAB logical.
    let plain = read_annotation(&ann.join("chair_imagenet/n03001627_101.mat")).unwrap();
    assert_eq!(plain.objects.len(), 2);
    assert!(!plain.objects[0].difficult && plain.objects[1].difficult);
    // `truncated` saved as uint8.
    let two = read_annotation(&ann.join("chair_imagenet/n03001627_102.mat")).unwrap();
    assert_eq!((two.objects[0].truncated, two.objects[1].truncated), (false, true));
    assert_eq!(two.objects[0].cad_index, Some(2));
    // A coarse-only viewpoint: empty fine angles, distance 0.
    let coarse = read_annotation(&ann.join("chair_imagenet/n03001627_104.mat")).unwrap();
    let vp = coarse.objects[0].viewpoint.unwrap();
    assert_eq!((vp.azimuth, vp.elevation, vp.distance, vp.fine), (345.0, 30.0, 0.0, false));

    // The nested anchors, three struct levels down, through the raw reader.
    let raw = MatFile::open(ann.join("chair_pascal/2008_000123.mat")).unwrap();
    let objects = raw.get("record").unwrap().field("objects").unwrap();
    let anchor = objects.field_of(2, "anchors").unwrap().field("back_upper_left").unwrap();
    assert_eq!(anchor.field("location").unwrap().as_f64s().unwrap(), &[12.5, 30.0]);
    assert_eq!(objects.field_of(2, "view").unwrap().as_string().as_deref(), Some("Frontal"));
}

#[test]
fn corrupt_and_truncated_mat_files_fail_clearly_never_panic() {
    let cut = release().join("Annotations/chair_imagenet/n03001627_103.mat");
    let err = read_annotation(&cut).unwrap_err().to_string();
    assert!(err.contains("compressed element") || err.contains("truncated"), "{err}");
    for name in ["types.mat", "types_compressed.mat"] {
        let bytes = std::fs::read(data().join(name)).unwrap();
        let full = MatFile::parse(&bytes).unwrap();
        // Every strict prefix either fails or (cut between variables) reads fewer variables.
        for len in (0..bytes.len()).step_by(3) {
            match MatFile::parse(&bytes[..len]) {
                Ok(f) => assert!(f.variables.len() < full.variables.len() && full.variables.starts_with(&f.variables), "{name}: prefix {len}"),
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
        // Flipped bytes: any outcome but a panic or a hang.
        for i in (128..bytes.len()).step_by(5) {
            let mut bad = bytes.clone();
            bad[i] ^= 0xa5;
            let _ = MatFile::parse(&bad);
        }
    }
    assert!(matches!(MatFile::parse(&[0u8; 200]), Err(MatError::NotMat(_))));
    let not_record = read_annotation(&data().join("types.mat")).unwrap_err().to_string();
    assert!(not_record.contains("record"), "{not_record}");
}

fn import(out: &Path, cfg: &ImportConfig) -> ImportReport {
    import_pascal3d(&release(), out, cfg, &quiet).unwrap()
}

fn record(out: &Path, category: Category, model: &str) -> SampleRecord {
    let path = out.join(SAMPLES_DIR).join(category.synset()).join(format!("{model}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn ids(ds: &Dataset, split: Split, c: Category) -> Vec<String> {
    ds.samples(split, Some(&[c])).into_iter().map(|s| s.model_id).collect()
}

#[test]
fn import_writes_a_dataset_the_reader_opens() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let report = import_pascal3d(&release(), out, &ImportConfig::default(), &|_| {
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    assert!(calls.into_inner() > 0, "progress must be reported");

    // Counts and reasons.
    assert_eq!(report.samples, 5);
    let chair = &report.categories[&Category::Chair];
    assert_eq!((chair.annotation_files, chair.objects, chair.other_class_objects, chair.imported, chair.cad_models), (5, 7, 1, 3, 1));
    let counts = report.skip_counts();
    let expected: Vec<(&str, usize)> = vec![("bad_annotation", 1), ("difficult", 1), ("missing_cad", 1), ("occluded", 1), ("truncated", 1)];
    assert_eq!(counts.into_iter().collect::<Vec<_>>(), expected);
    let missing = report.skipped.iter().find(|s| s.reason.code() == "missing_cad").unwrap();
    assert_eq!((missing.annotation.as_str(), missing.object), ("Annotations/chair_imagenet/n03001627_102.mat", Some(1)));
    assert_eq!(missing.reason, SkipReason::MissingCad { path: "CAD/chair/02.off".into() });
    let bad = report.skipped.iter().find(|s| s.reason.code() == "bad_annotation").unwrap();
    assert_eq!((bad.annotation.as_str(), bad.object), ("Annotations/chair_imagenet/n03001627_103.mat", None));
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join(REPORT_FILE)).unwrap()).unwrap();
    assert_eq!(saved["report"]["samples"], 5);
    assert_eq!(saved["report"]["skipped"].as_array().unwrap().len(), 5);
    assert_eq!(saved["config"]["split_from"], "image-sets");

    // Splits: chair from the image sets (ImageNet val -> test; VOC train -> train),
    // aeroplane (no image sets) seeded.
    let ds = Dataset::open(out).unwrap();
    assert_eq!(ds.taxonomy.iter().map(|t| t.taxonomy_id.as_str()).collect::<Vec<_>>(), ["02691156", "03001627"]);
    assert_eq!(ids(&ds, Split::Train, Category::Chair), ["2008_000123_03", "n03001627_101_01"]);
    assert_eq!(ids(&ds, Split::Val, Category::Chair), Vec::<String>::new());
    assert_eq!(ids(&ds, Split::Test, Category::Chair), ["n03001627_104_01"]);
    assert_eq!(chair.split_source.values().cloned().collect::<Vec<_>>(), ["image-sets", "image-sets"]);
    let plane = &report.categories[&Category::Aeroplane];
    assert!(plane.split_source[&mono2mesh_catalog::pascal3d::Source::Imagenet].starts_with("seed (no Image_sets/aeroplane_imagenet_train.txt"), "{:?}", plane.split_source);
    let (tr, te) = (ids(&ds, Split::Train, Category::Aeroplane), ids(&ds, Split::Test, Category::Aeroplane));
    assert_eq!((tr.len(), te.len()), (1, 1), "two images, seeded: one train, one test");

    // The crop: square, the object's red box in the middle, photo around it.
    let s = ds.samples(Split::Train, Some(&[Category::Chair])).into_iter().find(|s| s.model_id == "n03001627_101_01").unwrap();
    let view = &ds.load_views(&s, &[0]).unwrap()[0];
    assert_eq!(view.dimensions(), (137, 137));
    let centre = view.get_pixel(68, 68).0;
    assert!(centre[0] > 180 && centre[1] < 70 && centre[2] < 70, "centre {centre:?} is not the red object");
    let corner = view.get_pixel(2, 2).0;
    assert!(corner[..3].iter().all(|&c| (108..=148).contains(&c)), "corner {corner:?} is not the grey photo");
    let rec = record(out, Category::Chair, "n03001627_101_01");
    assert_eq!(rec.crop, crop_box([10.0, 8.0, 40.0, 44.0], 0.1).unwrap());
    assert_eq!((rec.image.as_str(), rec.cad_index, rec.cad_file.as_str(), rec.object_index), ("Images/chair_imagenet/n03001627_101.JPEG", 1, "CAD/chair/01.off", 1));
    assert_eq!(rec.split, Split::Train);
    // A box at the photo's corner: the square runs off the photo and is padded white.
    let corner_sample = ds.samples(Split::Test, Some(&[Category::Chair])).remove(0);
    let padded = &ds.load_views(&corner_sample, &[0]).unwrap()[0];
    assert!(padded.get_pixel(3, 3).0[..3].iter().all(|&c| c >= 245), "{:?}", padded.get_pixel(3, 3));
    assert!(padded.get_pixel(68, 68).0[0] > 180);

    // Voxels: the CAD model, voxelized, in our frame.
    let grid = ds.load_voxels(&s).unwrap();
    assert_eq!(grid.dims, [32, 32, 32]);
    let occupied = grid.count_at_least(0.5);
    assert!(occupied > 200, "{occupied}");
    assert_eq!(occupied, rec.occupied_voxels);
    let (mesh, scale) = normalise_cad(read_mesh(release().join("CAD/chair/01.off")).unwrap());
    assert!((scale - rec.cad_scale).abs() < 1e-6);
    let direct = voxelize(&mesh, 32).unwrap();
    assert_eq!(grid.data, direct.data);
    // The chair's back (Pascal3D+ +Y, top) must end up at our -X and high Y: in the top
    // third of the grid, the occupied voxels sit on the low-x side.
    let (mut sum_x, mut n) = (0usize, 0usize);
    for x in 0..32 {
        for y in 22..32 {
            for z in 0..32 {
                if grid.get(x, y, z) >= 0.5 {
                    sum_x += x;
                    n += 1;
                }
            }
        }
    }
    assert!(n > 0 && (sum_x as f64 / n as f64) < 10.0, "back at mean x {} of {n} voxels", sum_x as f64 / n as f64);
    // The aeroplane's wings (Pascal3D+ X) run along our Z, its fuselage (Y) along X.
    let p = ds.samples(Split::Train, Some(&[Category::Aeroplane])).remove(0);
    let plane_grid = ds.load_voxels(&p).unwrap();
    let span = |axis: usize| {
        let mut hit = [false; 32];
        for x in 0..32 {
            for y in 0..32 {
                for z in 0..32 {
                    if plane_grid.get(x, y, z) >= 0.5 {
                        hit[[x, y, z][axis]] = true;
                    }
                }
            }
        }
        hit.iter().filter(|h| **h).count()
    };
    assert_eq!(span(2), 32, "wings span the grid along z");
    assert!(span(0) > 20 && span(0) < 32 && span(1) < 6, "x {} y {}", span(0), span(1));

    // The view metadata: the annotation's angles in R2N2's convention.
    let v = ds.load_view_params(&s).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!((v[0].azimuth_deg, v[0].elevation_deg, v[0].in_plane_deg), (30.0, 10.0, -5.0));
    assert!((v[0].distance_ratio - 3.0 / rec.cad_scale / 1.75).abs() < 1e-5);
    let coarse = ds.load_view_params(&corner_sample).unwrap();
    assert_eq!((coarse[0].azimuth_deg, coarse[0].distance_ratio), (345.0, 0.0));
    assert!(!record(out, Category::Chair, "n03001627_104_01").viewpoint.fine);
}

#[test]
fn policy_options_and_seeded_splits() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ImportConfig {
        categories: vec![Category::Chair],
        split_from: SplitFrom::Seed,
        seed: 4,
        splits: SplitFractions { train: 0.5, val: 0.25 },
        include_truncated: true,
        include_occluded: true,
        include_difficult: true,
        ..ImportConfig::default()
    };
    let report = import(dir.path(), &cfg);
    // + the difficult, truncated and occluded chairs; still not the one on the missing CAD.
    assert_eq!(report.samples, 6);
    assert_eq!(report.categories.keys().copied().collect::<Vec<_>>(), [Category::Chair]);
    assert_eq!(report.skip_counts().into_iter().collect::<Vec<_>>(), [("bad_annotation", 1), ("missing_cad", 1)]);
    let ds = Dataset::open(dir.path()).unwrap();
    let split_of = |m: &str| [Split::Train, Split::Val, Split::Test].into_iter().find(|&s| ids(&ds, s, Category::Chair).iter().any(|x| x == m)).unwrap();
    // Objects of one photo stay in one split.
    assert_eq!(split_of("n03001627_101_01"), split_of("n03001627_101_02"));
    assert_eq!(split_of("2008_000123_02"), split_of("2008_000123_03"));
    assert!(report.categories[&Category::Chair].split_source.values().all(|s| s == "seed"));
    // Both sources' 4 photos are split together: 2 train, 1 val, 1 test.
    let photos = |s: Split| ids(&ds, s, Category::Chair).iter().map(|m| m[..m.len() - 3].to_string()).collect::<std::collections::BTreeSet<_>>().len();
    assert_eq!((photos(Split::Train), photos(Split::Val), photos(Split::Test)), (2, 1, 1));
    // Same inputs, same output; another seed, another split of the 3 ImageNet photos.
    let again = tempfile::tempdir().unwrap();
    import(again.path(), &cfg);
    for f in ["ShapeNet.json", "ShapeNetRendering/03001627/2008_000123_02/rendering/00.png", "ShapeNetVox32/03001627/n03001627_102_02/model.binvox"] {
        assert_eq!(std::fs::read(dir.path().join(f)).unwrap(), std::fs::read(again.path().join(f)).unwrap(), "{f}");
    }
    let splits_for = |seed: u64| {
        let d = tempfile::tempdir().unwrap();
        import(d.path(), &ImportConfig { seed, ..cfg.clone() });
        let ds = Dataset::open(d.path()).unwrap();
        [Split::Train, Split::Val, Split::Test].map(|s| ids(&ds, s, Category::Chair))
    };
    let base = splits_for(4);
    assert!((0..8).any(|seed| splits_for(seed) != base), "the seed must matter");
}

#[test]
fn missing_files_skip_only_what_depends_on_them() {
    // A copy of the tree, under the folder name the release unpacks to.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("PASCAL3D+_release1.1");
    copy_dir(&release(), &root);
    std::fs::remove_file(root.join("CAD/aeroplane/01.off")).unwrap();
    std::fs::remove_file(root.join("Images/chair_imagenet/n03001627_104.JPEG")).unwrap();
    std::fs::write(root.join("Images/chair_pascal/2008_000123.jpg"), b"not a jpeg").unwrap();
    let out = dir.path().join("out");
    // The parent folder is accepted too.
    let report = import_pascal3d(dir.path(), &out, &ImportConfig::default(), &quiet).unwrap();
    assert_eq!(report.samples, 1, "{:#?}", report.skipped);
    let counts = report.skip_counts();
    assert_eq!(counts["missing_cad"], 3, "{counts:?}"); // both aeroplanes, and the chair on CAD 02
    assert_eq!(counts["missing_image"], 1, "{counts:?}");
    assert_eq!(counts["bad_image"], 1, "{counts:?}");
    assert!(report.skipped.iter().any(|s| s.reason == SkipReason::MissingCad { path: "CAD/aeroplane/01.off".into() }));
    assert!(report.skipped.iter().any(|s| s.reason == SkipReason::MissingImage { path: "Images/chair_imagenet/n03001627_104.JPEG".into() }));
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.taxonomy.len(), 1, "aeroplane has no samples left and is left out");
    assert_eq!(ids(&ds, Split::Train, Category::Chair), ["n03001627_101_01"]);
    assert!(report.categories[&Category::Aeroplane].split_source.is_empty(), "no aeroplane photo is left to split");

    // Importing again into our own output is fine; into another dataset's root is not.
    import_pascal3d(dir.path(), &out, &ImportConfig::default(), &quiet).unwrap();
    let synthetic = dir.path().join("synthetic");
    std::fs::create_dir_all(&synthetic).unwrap();
    std::fs::write(synthetic.join("ShapeNet.json"), b"[]").unwrap();
    let err = import_pascal3d(dir.path(), &synthetic, &ImportConfig::default(), &quiet).unwrap_err();
    assert!(err.to_string().contains("another dataset"), "{err}");
    assert_eq!(std::fs::read(synthetic.join("ShapeNet.json")).unwrap(), b"[]");

    // Nothing to import: an error naming why, and the earlier import left as it was.
    let before = std::fs::read(out.join("ShapeNet.json")).unwrap();
    let cfg = ImportConfig { categories: vec![Category::Bus, Category::Aeroplane], ..ImportConfig::default() };
    match import_pascal3d(dir.path(), &out, &cfg, &quiet).unwrap_err() {
        e @ mono2mesh_catalog::pascal3d::ImportError::NothingImported { .. } => {
            let text = e.to_string();
            assert!(text.contains("folders for bus") && text.contains("missing_cad 2"), "{text}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(std::fs::read(out.join("ShapeNet.json")).unwrap(), before);

    // Not a Pascal3D+ folder at all: one clear error.
    let err = import_pascal3d(dir.path().join("out").as_path(), &dir.path().join("o2"), &ImportConfig::default(), &quiet).unwrap_err();
    assert!(err.to_string().contains("Annotations"), "{err}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}
