#!/usr/bin/env python3
"""Writes the tiny Pascal3D+ tree the catalog tests read (committed; rerun only to change it).

The annotation files are real MAT v5 files written by scipy.io.savemat, with the record
structure of PASCAL3D+_release1.1 (`record.filename`, `record.size.{width,height,depth}`,
`record.objects(k).{class, bbox, viewpoint.{azimuth,elevation,distance,theta,...},
cad_index, truncated, occluded, difficult, anchors...}`), some compressed (miCOMPRESSED,
as MATLAB's default -v7 writes them) and some not. Images are small JPEGs with a red box
where the annotated object is, so a test can see that the crop follows the bbox. The CAD
models are small .off files in Pascal3D+'s frame (Z up, the azimuth-0 camera on -Y).

    python3 -m venv /tmp/p3d-venv && /tmp/p3d-venv/bin/pip install scipy numpy pillow
    /tmp/p3d-venv/bin/python shared/catalog/tests/data/pascal3d/make_fixtures.py

Made with scipy 1.17.1, numpy 2.4.6, Pillow 13.0.0. The MAT header holds a creation date,
so rerunning changes the bytes but not the content.

Layout (under release1.1/):
  Annotations/chair_imagenet/n03001627_101.mat  uncompressed: 1 usable chair, 1 difficult
  Annotations/chair_imagenet/n03001627_102.mat  compressed: chair on CAD 02 (missing), 1 truncated
  Annotations/chair_imagenet/n03001627_103.mat  a good file cut short: corrupt
  Annotations/chair_imagenet/n03001627_104.mat  compressed: coarse-only viewpoint, box at the corner
  Annotations/chair_pascal/2008_000123.mat      compressed: a person, an occluded chair, a chair
  Annotations/aeroplane_imagenet/n02690373_20{1,2}.mat  compressed: one aeroplane each
  Images/<cat>_<source>/<id>.JPEG|jpg, CAD/chair/01.off, CAD/aeroplane/01.off
  Image_sets/chair_imagenet_{train,val}.txt; PASCAL/VOCdevkit/VOC2012/ImageSets/Main/chair_train.txt
  (no image sets for aeroplane: the importer falls back to a seeded split there)
Also types.mat / types_compressed.mat: one variable of each MAT class the reader supports.
"""
import os
import shutil

import numpy as np
import scipy.io as sio
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "release1.1")

OBJECT_FIELDS = ["class", "view", "truncated", "occluded", "difficult", "bbox", "anchors",
                 "viewpoint", "cad_index", "polygon", "point", "part", "array", "sub_index"]

EMPTY = np.zeros((0, 0))


def viewpoint(az, el, theta, distance, fine=True):
    """A Pascal3D+ viewpoint struct; coarse-only ones have empty fine angles and distance 0."""
    return {
        "azimuth_coarse": float(round(az / 15) * 15 % 360),
        "azimuth": float(az) if fine else EMPTY,
        "elevation_coarse": float(round(el / 15) * 15),
        "elevation": float(el) if fine else EMPTY,
        "distance": float(distance) if fine else 0.0,
        "focal": 1.0,
        "px": 250.0,
        "py": 187.5,
        "theta": float(theta),
        "error": 3.2,
        "interval_azimuth": 7.5,
        "interval_elevation": 7.5,
        "num_anchor": 6.0,
        "viewport": 3000.0,
    }


def anchors(names):
    # Per-anchor structs {location [x y] or [], status}: nesting three levels deep.
    return {n: {"location": np.array([[12.5, 30.0]]) if i % 2 == 0 else EMPTY, "status": float(1 + i % 2)}
            for i, n in enumerate(names)}


def obj(cls, bbox, vp, cad, truncated=0, occluded=0, difficult=0):
    return {
        "class": cls,
        "view": "Frontal" if vp is not None else "",
        "truncated": truncated,
        "occluded": occluded,
        "difficult": difficult,
        "bbox": np.array([bbox], dtype=float),
        "anchors": anchors(["back_upper_left", "seat_upper_left"]) if vp is not None else EMPTY,
        "viewpoint": vp if vp is not None else EMPTY,
        "cad_index": float(cad) if cad is not None else EMPTY,
        "polygon": EMPTY,
        "point": EMPTY,
        "part": EMPTY,
        "array": EMPTY,
        "sub_index": 1.0,
    }


def struct_array(items):
    """A 1xN MATLAB struct array (what MATLAB's record.objects is)."""
    arr = np.zeros((1, len(items)), dtype=[(f, object) for f in OBJECT_FIELDS])
    for i, it in enumerate(items):
        for f in OBJECT_FIELDS:
            arr[0, i][f] = it[f]
    return arr


def record(filename, database, w, h, objects):
    return {
        "record": {
            "filename": filename,
            "folder": database,
            "source": {"database": database, "annotation": "PASCAL3D+", "image": database},
            "size": {"width": float(w), "height": float(h), "depth": 3.0},
            "segmented": 0.0,
            "imgname": filename,
            "database": database,
            "objects": struct_array(objects),
        }
    }


def image(path, w, h, boxes):
    """Grey background, a red filled rectangle per 1-based inclusive bbox."""
    px = np.full((h, w, 3), 128, dtype=np.uint8)
    for x1, y1, x2, y2 in boxes:
        px[int(y1) - 1:int(y2), int(x1) - 1:int(x2)] = (220, 20, 20)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(px).save(path, quality=90)


def off_boxes(path, boxes):
    """An .off of axis-aligned boxes (lo, hi), quads, in Pascal3D+'s frame."""
    verts, faces = [], []
    for lo, hi in boxes:
        b = len(verts)
        for i in range(8):
            verts.append([hi[a] if (i >> a) & 1 else lo[a] for a in range(3)])
        for q in ([0, 2, 3, 1], [4, 5, 7, 6], [0, 1, 5, 4], [2, 6, 7, 3], [0, 4, 6, 2], [1, 3, 7, 5]):
            faces.append([b + k for k in q])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("OFF\n%d %d 0\n" % (len(verts), len(faces)))
        for v in verts:
            f.write("%g %g %g\n" % tuple(v))
        for q in faces:
            f.write("4 %d %d %d %d\n" % tuple(q))


def save(rel, data, compressed):
    path = os.path.join(ROOT, "Annotations", rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sio.savemat(path, data, do_compression=compressed)
    return path


def write_lines(rel, lines):
    path = os.path.join(ROOT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(l + "\n" for l in lines))


def main():
    shutil.rmtree(ROOT, ignore_errors=True)

    # chair, ImageNet part.
    save("chair_imagenet/n03001627_101.mat", record("n03001627_101.JPEG", "ImageNet", 64, 48, [
        obj("chair", [10, 8, 40, 44], viewpoint(30.0, 10.0, 5.0, 3.0), 1),
        obj("chair", [45, 20, 60, 40], viewpoint(200.0, 5.0, 0.0, 4.0), 1, difficult=np.bool_(True)),
    ]), compressed=False)
    image(os.path.join(ROOT, "Images/chair_imagenet/n03001627_101.JPEG"), 64, 48, [[10, 8, 40, 44]])

    save("chair_imagenet/n03001627_102.mat", record("n03001627_102.JPEG", "ImageNet", 48, 64, [
        obj("chair", [5, 5, 40, 60], viewpoint(90.0, 20.0, 0.0, 3.5), 2),
        obj("chair", [30, 40, 48, 64], viewpoint(120.0, 15.0, 0.0, 3.5), 1, truncated=np.uint8(1)),
    ]), compressed=True)
    image(os.path.join(ROOT, "Images/chair_imagenet/n03001627_102.JPEG"), 48, 64, [[5, 5, 40, 60]])

    good = save("chair_imagenet/n03001627_103.mat", record("n03001627_103.JPEG", "ImageNet", 64, 48, [
        obj("chair", [10, 8, 40, 44], viewpoint(30.0, 10.0, 0.0, 3.0), 1),
    ]), compressed=True)
    with open(good, "rb") as f:
        data = f.read()
    with open(good, "wb") as f:
        f.write(data[: len(data) * 2 // 3])  # cut inside the compressed stream
    image(os.path.join(ROOT, "Images/chair_imagenet/n03001627_103.JPEG"), 64, 48, [[10, 8, 40, 44]])

    save("chair_imagenet/n03001627_104.mat", record("n03001627_104.JPEG", "ImageNet", 64, 48, [
        obj("chair", [1, 1, 30, 20], viewpoint(345.0, 30.0, 0.0, 0.0, fine=False), 1),
    ]), compressed=True)
    image(os.path.join(ROOT, "Images/chair_imagenet/n03001627_104.JPEG"), 64, 48, [[1, 1, 30, 20]])

    # chair, PASCAL VOC part: other classes are annotated too, without viewpoint or CAD.
    save("chair_pascal/2008_000123.mat", record("2008_000123.jpg", "PASCAL VOC", 64, 48, [
        obj("person", [2, 2, 12, 40], None, None),
        obj("chair", [14, 10, 30, 30], viewpoint(60.0, 12.0, -3.0, 2.5), 1, occluded=1),
        obj("chair", [32, 6, 62, 46], viewpoint(300.0, 8.0, 2.0, 2.8), 1),
    ]), compressed=True)
    image(os.path.join(ROOT, "Images/chair_pascal/2008_000123.jpg"), 64, 48, [[32, 6, 62, 46]])

    # aeroplane, ImageNet part.
    for i, (az, box) in enumerate([(45.0, [8, 12, 56, 36]), (270.0, [4, 4, 60, 44])]):
        stem = "n02690373_20%d" % (i + 1)
        save("aeroplane_imagenet/%s.mat" % stem, record(stem + ".JPEG", "ImageNet", 64, 48, [
            obj("aeroplane", box, viewpoint(az, 20.0, 0.0, 5.0), 1),
        ]), compressed=True)
        image(os.path.join(ROOT, "Images/aeroplane_imagenet/%s.JPEG" % stem), 64, 48, [box])

    # CAD: a chair (seat + back + one leg block) and an aeroplane (fuselage + wings), Z up.
    off_boxes(os.path.join(ROOT, "CAD/chair/01.off"), [
        ([-0.25, -0.25, 0.20], [0.25, 0.25, 0.28]),   # seat
        ([-0.25, 0.18, 0.28], [0.25, 0.25, 0.80]),    # back, at +Y (away from the az-0 camera)
        ([-0.05, -0.05, 0.00], [0.05, 0.05, 0.20]),   # pedestal
    ])
    off_boxes(os.path.join(ROOT, "CAD/aeroplane/01.off"), [
        ([-0.08, -0.60, -0.08], [0.08, 0.60, 0.08]),  # fuselage along Y
        ([-0.70, -0.10, -0.02], [0.70, 0.10, 0.02]),  # wings along X
    ])

    write_lines("Image_sets/chair_imagenet_train.txt", ["n03001627_101", "n03001627_102", "n03001627_103"])
    write_lines("Image_sets/chair_imagenet_val.txt", ["n03001627_104"])
    write_lines("PASCAL/VOCdevkit/VOC2012/ImageSets/Main/chair_train.txt", ["2008_000123  1", "2008_000999 -1"])

    # One variable per supported class, for the MAT reader's own tests.
    st = np.zeros((1, 2), dtype=[("a", object), ("b", object)])
    st[0, 0]["a"] = 1.5
    st[0, 0]["b"] = "x"
    st[0, 1]["a"] = np.array([[1.0, 2.0]])
    st[0, 1]["b"] = {"inner": np.int16(-7)}
    cell = np.empty((1, 3), dtype=object)
    cell[0, 0] = 1.0
    cell[0, 1] = "ab"
    cell[0, 2] = np.array([[1.0, 2.0], [3.0, 4.0]])
    types = {
        "d": np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
        "i8": np.array([[-128, 127]], dtype=np.int8),
        "u8": np.array([[0, 255]], dtype=np.uint8),
        "i16": np.array([[-32768, 32767]], dtype=np.int16),
        "u16": np.array([[0, 65535]], dtype=np.uint16),
        "i32": np.array([[-2147483648, 2147483647]], dtype=np.int32),
        "u32": np.array([[0, 4294967295]], dtype=np.uint32),
        "i64": np.array([[-(2 ** 53), 2 ** 53]], dtype=np.int64),
        "u64": np.array([[0, 2 ** 53]], dtype=np.uint64),
        "f32": np.array([[0.5, -1.25]], dtype=np.float32),
        "flag": np.array([[True, False, True]]),
        "cplx": np.array([[1 + 2j, -3.5 - 0.5j]]),
        "c": cell,
        "chars": np.array(["abc", "def"]),
        "uni": "h\u00e9llo \u2713",
        "st": st,
        "e": EMPTY,
        "es": "",
    }
    sio.savemat(os.path.join(HERE, "types.mat"), types, do_compression=False)
    sio.savemat(os.path.join(HERE, "types_compressed.mat"), types, do_compression=True)


if __name__ == "__main__":
    main()
