#!/usr/bin/env python3
"""The model pack's results as markdown (docs/experiments/model-pack.md): the paper's
Table 2 on our data from the JSON reports `scripts/train-pack.sh` leaves in its state dir.

usage: pack-table.py PACK_DIR SPECIALISTS(comma list) [SHIPPED(comma list)]
"""
import json
import os
import platform
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def report(pack, name):
    path = os.path.join(pack, "eval", f"{name}.eval.json")
    return load(path)["report"] if os.path.exists(path) else None


def run_stats(pack, name):
    path = os.path.join(pack, "runs", name, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    rows = [json.loads(l) for l in open(path) if l.strip()]
    if not rows:
        return None
    seconds = sum(r["train_seconds"] for r in rows)
    steps = sum(r["batches"] for r in rows)
    best = max(rows, key=lambda r: r["val_best_iou"])
    return {
        "epochs": len(rows),
        "steps": steps,
        "hours": seconds / 3600,
        "img_s": sum(r["images_per_second"] * r["train_seconds"] for r in rows) / max(seconds, 1e-9),
        "best_epoch": best["epoch"],
        "val_iou": best["val_best_iou"],
        "peak_rss_mib": max(r.get("peak_rss_mib", 0) for r in rows),
    }


def fmt(values):
    return " / ".join(f"{v:.3f}" for v in values)


def main():
    pack, specialists = sys.argv[1], [c for c in sys.argv[2].split(",") if c]
    base, general = report(pack, "base"), report(pack, "general")
    if base is None or general is None:
        sys.exit("pack-table: the base and general reports are missing; run the eval step first")
    thresholds = [round(t, 3) for t in general["thresholds"]]
    t03 = min(range(len(thresholds)), key=lambda i: abs(thresholds[i] - 0.3))
    # a specialist's report holds one category, under its taxonomy name
    special = {}
    for c in specialists:
        r = report(pack, c)
        if r and r["per_category"]:
            special[next(iter(r["per_category"]))] = (c, r["per_category"][next(iter(r["per_category"]))]["iou"])
    shipped = set(sys.argv[3].split(",")) if len(sys.argv) > 3 else set(specialists)
    out = []
    out.append("# The model pack: base, general and specialists on our synthetic catalog\n")
    out.append("Written by `scripts/train-pack.sh` (via `scripts/pack-table.py`); the figures below are")
    out.append("what that run measured. The paper's Table 2 on our data: each model on the **test split of a")
    out.append("catalog made with a seed training never saw**, first view of each test model, IoU at")
    out.append(f"thresholds {', '.join(str(t) for t in thresholds)} (official Pix2Vox IoU, sample-weighted).\n")
    out.append("## Overall (all 12 categories)\n")
    out.append("| model | test models | IoU " + " / ".join(f"t={t}" for t in thresholds) + " |")
    out.append("|---|---:|---|")
    for name, r in (("base", base), ("general", general)):
        out.append(f"| {name} | {r['samples']} | {fmt(r['overall'])} |")
    g = general["overall"][t03]
    out.append("")
    out.append(f"Quality bar: general IoU at t=0.3 >= 0.55: **{g:.3f}** ({'met' if g >= 0.55 else f'missed by {0.55 - g:.3f}'}).")
    out.append("A specialist ships only when it beats the general model on its own category's test")
    out.append("models at t=0.3 (`models pack --require-better`); the others stay in the table, marked.\n")
    out.append("## Per category: base / general / specialist (t=0.3; all thresholds below)\n")
    out.append("| category | test models | base | general | specialist | specialist - general |")
    out.append("|---|---:|---:|---:|---:|---:|")
    detail = []
    for cat, row in general["per_category"].items():
        b = base["per_category"].get(cat, {}).get("iou")
        name, s_iou = special.get(cat, (None, None))
        gi = row["iou"]
        mark = "" if name is None or name in shipped else " (not shipped)"
        out.append(
            f"| {cat} | {row['samples']} | {b[t03]:.3f} | {gi[t03]:.3f} | "
            + (f"{s_iou[t03]:.3f}{mark} | {s_iou[t03] - gi[t03]:+.3f} |" if s_iou else "- | - |")
        )
        detail.append(f"| {cat} | {fmt(b)} | {fmt(gi)} | {fmt(s_iou) if s_iou else '-'} |")
    out.append("")
    out.append("| category | base (t=" + " / ".join(str(t) for t in thresholds) + ") | general | specialist |")
    out.append("|---|---|---|---|")
    out.extend(detail)
    out.append("\n## Training\n")
    out.append("| run | epochs | optimizer steps | hours | images/s | best epoch | val IoU | peak RSS |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in ["base", "general"] + [c for c in specialists]:
        st = run_stats(pack, name)
        if st:
            out.append(
                f"| {name} | {st['epochs']} | {st['steps']} | {st['hours']:.2f} | {st['img_s']:.1f} | "
                f"{st['best_epoch']} | {st['val_iou']:.3f} | {st['peak_rss_mib']:.0f} MiB |"
            )
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out.append(f"\nHardware: {os.cpu_count()} cores, {cpu}, {platform.system()}; no GPU.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
