#!/usr/bin/env python3
"""The capacity model of docs/capacity.md, fed with measured costs (standard library only).

    # per-stage CPU cost per job, from a fault-free run of the real workers
    bash scripts/chaos.sh throughput 150            # writes <work dir>/throughput.json
    python3 scripts/capacity.py costs RUN/throughput.json > costs.json

    # check: predict another run's wall time on this machine, then compare with it
    python3 scripts/capacity.py predict costs.json --photos 500 [--measured RUN2/throughput.json]

    # plan: pods per stage, queue depth and p99 latency for daily volumes
    python3 scripts/capacity.py plan costs.json [--volumes 100000,1000000,10000000]

Model. Every stage is CPU work (the reconstruct stage on GPU nodes in `plan`). On one
machine all processes share its cores, so a run's wall time is its CPU work divided by the
cores (the machine stays saturated while photos wait; the pipeline's fill and drain are a
few per-stage latencies). In a cluster each stage is its own pool of pods fed by a queue:
an M/M/c queue per stage at the peak arrival rate (Erlang C), pods sized for a target
utilisation; end-to-end p99 is bounded by the sum of the stages' p99 sojourn times.
"""
import argparse
import json
import math
import sys

STAGES = ["gate", "classify", "reconstruct", "refine"]
SERVICES = ["submit", "s3", "postgres", "rabbitmq"]


def costs_from_run(run):
    entered = run["entered"]
    cpu = run["cpu_s"]
    per_job = {s: 1000 * cpu[s] / entered[s] for s in STAGES if entered[s]}
    services = {s: 1000 * cpu[s] / run["photos"] for s in SERVICES}
    return {
        "source": "scripts/chaos.sh throughput",
        "photos": run["photos"],
        "cores": run["cores"],
        "elapsed_s": run["elapsed_s"],
        "cpu_ms_per_job": {k: round(v, 1) for k, v in per_job.items()},
        "services_cpu_ms_per_photo": {k: round(v, 1) for k, v in services.items()},
        "pass_rate": {
            "gate": entered["classify"] / entered["gate"],
            "classify": entered["reconstruct"] / max(entered["classify"], 1),
        },
        "cpu_utilisation": round(sum(cpu.values()) / (run["elapsed_s"] * run["cores"]), 3),
    }


def work_ms(costs, photos, entered=None):
    """CPU milliseconds for `photos` photos (entries per stage given, or by pass rates)."""
    c = costs["cpu_ms_per_job"]
    if entered is None:
        g, k = costs["pass_rate"]["gate"], costs["pass_rate"]["classify"]
        entered = {"gate": photos, "classify": photos * g, "reconstruct": photos * g * k, "refine": photos * g * k}
    stages = sum(c[s] * entered[s] for s in STAGES)
    services = photos * sum(costs["services_cpu_ms_per_photo"].values())
    return stages + services


def predict(args):
    costs = json.load(open(args.costs))
    cores = args.cores or costs["cores"]
    utilisation = costs["cpu_utilisation"] if args.utilisation is None else args.utilisation
    by_rates = work_ms(costs, args.photos) / 1000 / (cores * utilisation)
    out = {"photos": args.photos, "cores": cores, "utilisation": utilisation, "predicted_s": round(by_rates, 1)}
    if args.measured:
        run = json.load(open(args.measured))
        # The same model with the run's own stage entries (its photos' pass rates), which
        # separates the cost model's error from the difference between photo sets.
        by_entries = work_ms(costs, run["photos"], run["entered"]) / 1000 / (cores * utilisation)
        out.update({
            "measured_s": run["elapsed_s"],
            "error_pct": round(100 * (by_rates - run["elapsed_s"]) / run["elapsed_s"], 1),
            "predicted_with_its_pass_rates_s": round(by_entries, 1),
            "error_with_its_pass_rates_pct": round(100 * (by_entries - run["elapsed_s"]) / run["elapsed_s"], 1),
        })
    print(json.dumps(out, indent=2))


def erlang_c(servers, offered):
    """Probability an arrival waits in M/M/c with `offered` = lambda / mu erlangs."""
    if offered >= servers:
        return 1.0
    term, total = 1.0, 1.0
    for k in range(1, servers):
        term *= offered / k
        total += term
    term *= offered / servers
    last = term * servers / (servers - offered)
    return last / (total + last)


def stage_queue(rate, service_s, servers):
    """Mean queue length, and p99 sojourn (wait + service) of an M/M/c stage."""
    mu = 1 / service_s
    offered = rate / mu
    wait_prob = erlang_c(servers, offered)
    drain = servers * mu - rate
    queue = wait_prob * rate / drain if drain > 0 else math.inf
    # P(sojourn > t) for M/M/c, found by bisection on t.
    def tail(t):
        service_tail = math.exp(-mu * t)
        if abs(drain - mu) < 1e-12:
            wait_part = wait_prob * mu * t * math.exp(-mu * t)
        else:
            wait_part = wait_prob * mu / (drain - mu) * (math.exp(-mu * t) - math.exp(-drain * t))
        return (1 - wait_prob) * service_tail + wait_part
    lo, hi = 0.0, 1.0
    while tail(hi) > 0.01:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if tail(mid) > 0.01 else (lo, mid)
    return queue, hi


def plan(args):
    costs = json.load(open(args.costs))
    c = costs["cpu_ms_per_job"]
    g, k = costs["pass_rate"]["gate"], costs["pass_rate"]["classify"]
    # Per-pod service: seconds of one job on one pod (cores of its request), and jobs at once.
    pods = {
        "gate": {"cores": 0.5, "per_job_s": c["gate"] / 1000 / 0.5, "share": 1.0},
        "classify": {"cores": 1.0, "per_job_s": c["classify"] / 1000, "share": g},
        # GPU shard: the network on the GPU (reference H100: ~2 ms per image at batch 8,
        # Pix2Vox-F's VGG16 trunk plus decoder) and the host's part per job, taken as the
        # refine worker's CPU per job (the same S3 get/put, database and broker work).
        "reconstruct": {"cores": 1.0, "per_job_s": max(args.gpu_ms_per_image, c["refine"]) / 1000, "share": g * k},
        "refine": {"cores": 0.25, "per_job_s": c["refine"] / 1000 / 0.25, "share": g * k},
    }
    rows = []
    for volume in args.volumes:
        peak = volume / 86400 * args.peak_factor
        row = {"photos_per_day": volume, "peak_per_s": round(peak, 2), "stages": {}}
        total_p99 = 0.0
        for stage in STAGES:
            p = pods[stage]
            rate = peak * p["share"]
            needed = max(args.min_pods.get(stage, 1), math.ceil(rate * p["per_job_s"] / args.target_utilisation))
            queue, p99 = stage_queue(rate, p["per_job_s"], needed) if rate > 0 else (0.0, p["per_job_s"])
            total_p99 += p99
            row["stages"][stage] = {
                "pods": needed,
                "cores": round(needed * p["cores"], 2),
                "utilisation": round(rate * p["per_job_s"] / needed, 2),
                "mean_queue": round(queue, 1),
                "p99_s": round(p99, 2),
            }
        row["p99_end_to_end_s_at_most"] = round(total_p99, 2)
        busiest = max(STAGES, key=lambda s: row["stages"][s]["cores"] if s != "reconstruct" else -1)
        row["largest_cpu_pool"] = busiest
        row["gpus"] = row["stages"]["reconstruct"]["pods"]
        rows.append(row)
    print(json.dumps(rows, indent=2))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("costs")
    a.add_argument("run")
    b = sub.add_parser("predict")
    b.add_argument("costs")
    b.add_argument("--photos", type=int, required=True)
    b.add_argument("--cores", type=int)
    b.add_argument("--utilisation", type=float, help="CPU busy fraction; default: the calibration run's")
    b.add_argument("--measured")
    p = sub.add_parser("plan")
    p.add_argument("costs")
    p.add_argument("--volumes", type=lambda s: [int(v) for v in s.split(",")], default=[100_000, 1_000_000, 10_000_000])
    p.add_argument("--peak-factor", type=float, default=3.0, help="peak hour rate / daily mean rate")
    p.add_argument("--target-utilisation", type=float, default=0.7)
    p.add_argument("--gpu-ms-per-image", type=float, default=2.0)
    p.add_argument("--min-pods", type=json.loads, default={"gate": 1, "classify": 1, "reconstruct": 1, "refine": 1})
    args = ap.parse_args()
    if args.cmd == "costs":
        print(json.dumps(costs_from_run(json.load(open(args.run))), indent=2))
    elif args.cmd == "predict":
        predict(args)
    else:
        plan(args)


if __name__ == "__main__":
    sys.exit(main())
