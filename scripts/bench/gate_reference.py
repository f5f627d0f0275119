#!/usr/bin/env python3
"""The paper's gate tools, for comparing with `mono2mesh gate` / workers/gate.

Reference pipeline (what the paper's acquisition phase does with PIL + OpenCV):
    Image.open -> ImageOps.exif_transpose -> convert("RGB") -> resize((600, 600))  [Pillow
    default BICUBIC] -> cv2.cvtColor(RGB2GRAY) -> cv2.Laplacian(gray, cv2.CV_64F).var(),
    gray.mean()

Commands (needs pillow, opencv-python-headless, numpy):
  bench IMAGE...             time the reference pipeline per image (OpenCV limited to one
                             thread, like the Rust gate); prints a table and JSON lines
  agree GATE_JSON DIR        compare `mono2mesh gate --json --save-standardised DIR` output
                             with OpenCV scores on the same standardised PNGs, and with the
                             scores of the full PIL pipeline on the original files
  make-large SRC OUT         upscale a real photo to 4032x3024 (a 12 MP phone photo) as JPEG
"""
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

SIZE = 600


def scores_of_rgb(rgb: np.ndarray) -> tuple[float, float]:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var()), float(gray.mean())


def reference_gate(path: str) -> tuple[float, float]:
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        im = im.resize((SIZE, SIZE), Image.Resampling.BICUBIC)
        return scores_of_rgb(np.asarray(im))


def bench(paths: list[str], min_seconds: float = 1.0) -> None:
    cv2.setNumThreads(1)
    print(f"{'image':48} {'size':>10} {'median ms':>10} {'min ms':>8} {'runs':>5}")
    for path in paths:
        with Image.open(path) as im:
            size = f"{im.width}x{im.height}"
        reference_gate(path)  # warm caches
        times = []
        start = time.perf_counter()
        while time.perf_counter() - start < min_seconds or len(times) < 10:
            t0 = time.perf_counter()
            reference_gate(path)
            times.append((time.perf_counter() - t0) * 1e3)
        median = statistics.median(times)
        print(f"{Path(path).name:48} {size:>10} {median:10.3f} {min(times):8.3f} {len(times):5d}")
        print(json.dumps({"image": Path(path).name, "size": size, "median_ms": median, "min_ms": min(times)}),
              file=sys.stderr)


def agree(gate_json: str, standardised_dir: str) -> None:
    reports = [json.loads(line) for line in Path(gate_json).read_text().splitlines() if line.strip()]
    same_blur, same_mean, pil_blur, pil_mean, gray_mismatch = [], [], [], [], 0
    for entry in reports:
        scores = entry.get("report", {}).get("scores")
        if scores is None:
            continue
        png = Path(standardised_dir) / (Path(entry["file"]).stem + ".png")
        rgb = np.asarray(Image.open(png).convert("RGB"))
        blur, mean = scores_of_rgb(rgb)
        same_blur.append(abs(blur - scores["blur_variance"]) / max(blur, 1e-9))
        same_mean.append(abs(mean - scores["mean_intensity"]))
        ref_blur, ref_mean = reference_gate(entry["file"])
        pil_blur.append(abs(ref_blur - scores["blur_variance"]) / max(ref_blur, 1e-9))
        pil_mean.append(abs(ref_mean - scores["mean_intensity"]))
        # Pillow's own grayscale, for the record: it rounds differently from OpenCV.
        pil_gray = np.asarray(Image.fromarray(rgb).convert("L"))
        gray_mismatch += int((pil_gray != cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)).sum())
    n = len(same_blur)
    print(f"images compared: {n}")
    print("same standardised PNG, OpenCV vs ours:")
    print(f"  blur variance relative diff: max {max(same_blur):.3e}, mean {statistics.mean(same_blur):.3e}")
    print(f"  mean intensity abs diff:     max {max(same_mean):.3e}")
    print("full PIL resize + OpenCV on the original vs ours (resize differences included):")
    print(f"  blur variance relative diff: max {max(pil_blur):.3%}, median {statistics.median(pil_blur):.3%}")
    print(f"  mean intensity abs diff:     max {max(pil_mean):.3f}, median {statistics.median(pil_mean):.3f}")
    print(f"Pillow convert('L') vs OpenCV gray: {gray_mismatch} differing pixels over {n} images")


def make_large(src: str, out: str) -> None:
    with Image.open(src) as im:
        im.convert("RGB").resize((4032, 3024), Image.Resampling.BICUBIC).save(out, quality=90)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in {"bench", "agree", "make-large"}:
        print(__doc__)
        sys.exit(2)
    command, args = sys.argv[1], sys.argv[2:]
    if command == "bench":
        bench(args)
    elif command == "agree":
        agree(*args)
    else:
        make_large(*args)


if __name__ == "__main__":
    main()
