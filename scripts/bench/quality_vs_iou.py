#!/usr/bin/env python3
"""Does the quality confidence mean anything? For `mono2mesh run` outputs of catalog photos
whose true shapes are known: per category, the mean confidence, how many assets were
flagged needs_review, and the voxel IoU (voxels.binvox against the catalog's binvox) of
flagged and unflagged assets (docs/experiments/quality.md).

    python3 scripts/bench/quality_vs_iou.py RUN_OUT_DIR CATALOG_DIR

RUN_OUT_DIR holds one folder per photo named by its model id (syn-<category>-...), as
scripts/bench/refinement_predictions.sh makes them. Standard library only.
"""
import glob
import json
import os
import sys


def read_binvox(path):
    with open(path, "rb") as f:
        f.readline()
        dims = None
        while True:
            line = f.readline().strip()
            if line.startswith(b"dim"):
                dims = tuple(map(int, line.split()[1:]))
            if line == b"data":
                break
        raw = f.read()
    out = bytearray()
    for i in range(0, len(raw), 2):
        out.extend(bytes([raw[i]]) * raw[i + 1])
    return dims, out


def iou(a, b):
    inter = sum(1 for x, y in zip(a, b) if x and y)
    union = sum(1 for x, y in zip(a, b) if x or y)
    return inter / union if union else 0.0


def main():
    out_dir, catalog = sys.argv[1], sys.argv[2]
    truth = {}
    for path in glob.glob(os.path.join(catalog, "ShapeNetVox32", "*", "*", "*.binvox")):
        truth[os.path.basename(os.path.dirname(path))] = path
    rows = {}
    for folder in sorted(glob.glob(os.path.join(out_dir, "syn-*"))):
        model = os.path.basename(folder)
        report_path = os.path.join(folder, "report.json")
        if not os.path.exists(report_path) or model not in truth:
            continue
        report = json.load(open(report_path))
        category = model.split("-")[1]
        mesh = report.get("mesh")
        if report.get("status") != "done" or not mesh:
            rows.setdefault(category, []).append(None)
            continue
        _, predicted = read_binvox(os.path.join(folder, "voxels.binvox"))
        _, expected = read_binvox(truth[model])
        rows.setdefault(category, []).append((mesh["quality"], iou(predicted, expected)))
    print("| category | assets | mean confidence | flagged | IoU flagged | IoU not flagged |")
    print("|---|---:|---:|---:|---:|---:|")
    everything = []
    for category in sorted(rows):
        done = [r for r in rows[category] if r]
        everything.extend(done)
        flagged = [i for q, i in done if q["needs_review"]]
        kept = [i for q, i in done if not q["needs_review"]]
        mean = lambda xs: f"{sum(xs) / len(xs):.3f}" if xs else "-"
        print(f"| {category} | {len(done)} | {mean([q['confidence'] for q, _ in done])} | {len(flagged)} | {mean(flagged)} | {mean(kept)} |")
    flagged = [i for q, i in everything if q["needs_review"]]
    kept = [i for q, i in everything if not q["needs_review"]]
    mean = lambda xs: f"{sum(xs) / len(xs):.3f}" if xs else "-"
    print(f"| **all** | {len(everything)} | {mean([q['confidence'] for q, _ in everything])} | {len(flagged)} | {mean(flagged)} | {mean(kept)} |")
    # Rank agreement: how often a higher value goes with a higher IoU (pairs across all
    # assets), for the confidence and for each part on its own.
    print()
    for key in ["confidence", "watertight", "one_component", "plausible_volume", "silhouette_iou", "mask_coverage"]:
        scored = [(q[key], i) for q, i in everything if q.get(key) is not None]
        pairs = agree = 0
        for a in range(len(scored)):
            for b in range(a + 1, len(scored)):
                (qa, ia), (qb, ib) = scored[a], scored[b]
                if qa != qb and ia != ib:
                    pairs += 1
                    agree += (qa > qb) == (ia > ib)
        if pairs:
            print(f"Concordant pairs for {key} (higher {key}, higher IoU): {agree / pairs:.3f} of {pairs} ({len(scored)} assets)")


if __name__ == "__main__":
    main()
