#!/usr/bin/env python3
"""API figures for `scripts/chaos.sh api`: a bounded load of concurrent uploads and reads
against `mono2mesh serve` on loopback, with a database outage injected half-way.

    python3 scripts/chaos/api_load.py --serve BIN --photos DIR --db-url URL --out JSON
        [--uploads 300] [--clients 8] [--reads-per-upload 3] [--outage-after 0.4]
        [--outage-for 8] [--pad-mib 0]

Postgres is reached through a TCP proxy in this process, so the outage is real to the API
(connections cut, new ones refused) without touching the server other programs use. The
environment (blob store, broker, queue prefix) comes from the caller. Standard library only.

Every upload carries an Idempotency-Key and is retried after a 503 until it is accepted:
at the end every key must map to exactly one job, which must be in the database.
"""
import argparse
import http.client
import json
import os
import random
import select
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse


class PostgresProxy:
    """Forwards 127.0.0.1:<port> to the real Postgres; `cut()` drops every connection and
    refuses new ones until `restore()`."""

    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.down = False
        self.lock = threading.Lock()
        self.open = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            client, _ = self.listener.accept()
            if self.down:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a, b):
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                if self.down:
                    break
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        raise OSError
                    (b if s is a else a).sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass

    def cut(self):
        self.down = True
        with self.lock:
            for pair in self.open:
                for s in pair:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            self.open.clear()

    def restore(self):
        self.down = False


def multipart(fields, photo_name, photo_bytes):
    boundary = "m2m" + os.urandom(12).hex()
    parts = []
    for k, v in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="{photo_name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + photo_bytes + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.samples = []  # (kind, status, seconds, during_outage)

    def add(self, kind, status, seconds, during_outage):
        with self.lock:
            self.samples.append((kind, status, seconds, during_outage))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", required=True, help="the mono2mesh binary")
    ap.add_argument("--photos", required=True)
    ap.add_argument("--db-url", required=True, help="postgres://user@host:port/db of the real server")
    ap.add_argument("--out", required=True)
    ap.add_argument("--uploads", type=int, default=300)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--reads-per-upload", type=int, default=3)
    ap.add_argument("--outage-after", type=float, default=0.4, help="fraction of uploads before the outage")
    ap.add_argument("--outage-for", type=float, default=8.0, help="seconds (0: no outage)")
    ap.add_argument("--pad-mib", type=float, default=0.0,
                    help="MiB appended to every photo after its end: large uploads, to show the server's memory "
                         "does not grow with them (uploads are spooled to disk)")
    args = ap.parse_args()

    db = urllib.parse.urlparse(args.db_url)
    proxy = PostgresProxy(db.hostname, db.port or 5432)
    proxied = db._replace(netloc=f"{db.username}@127.0.0.1:{proxy.port}").geturl()
    token = os.urandom(24).hex()
    env = dict(os.environ, MONO2MESH__DATABASE__URL=proxied, MONO2MESH_API_TOKENS=token,
               MONO2MESH__WEBHOOK__SECRET=os.urandom(16).hex())
    serve = subprocess.Popen([args.serve, "serve", "--listen", "127.0.0.1:0"], env=env,
                             stdout=subprocess.PIPE, stderr=open(args.out + ".serve.log", "w"), text=True)
    line = serve.stdout.readline()
    if not line.startswith("listening on http://"):
        sys.exit(f"serve did not start: {line!r} (see {args.out}.serve.log)")
    host, port = line.strip().removeprefix("listening on http://").rsplit(":", 1)
    port = int(port)

    photos = sorted(os.path.join(args.photos, f) for f in os.listdir(args.photos) if f.endswith((".jpg", ".png")))
    if not photos:
        sys.exit(f"no photos in {args.photos}")
    photo_bytes = [open(p, "rb").read() for p in photos]
    padding = bytes(int(args.pad_mib * 1024 * 1024))

    rec = Recorder()
    outage = {"on": False, "start": None, "end": None}
    accepted = {}  # idempotency key -> job id
    accepted_lock = threading.Lock()
    issued = [0]
    issued_lock = threading.Lock()
    auth = {"Authorization": f"Bearer {token}"}

    def request(conn, method, path, body=None, headers=None):
        h = dict(auth, **(headers or {}))
        t0 = time.perf_counter()
        during = outage["on"]
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException):
            conn.close()
            status, data = 0, b""
        elapsed = time.perf_counter() - t0
        return status, data, elapsed, during or outage["on"]

    def client(index):
        conn = http.client.HTTPConnection(host, port, timeout=60)
        rng = random.Random(index)
        my_jobs = []
        while True:
            with issued_lock:
                if issued[0] >= args.uploads:
                    break
                n = issued[0]
                issued[0] += 1
            key = f"load-{n}"
            # A distinct photo per upload: trailing bytes after the JPEG's end do not change
            # the picture but make a new content hash, so no upload is a duplicate.
            src = photo_bytes[n % len(photo_bytes)] + f"\n{key}".encode() + padding
            body, ctype = multipart({"batch": "load", "external_id": key}, f"{key}.jpg", src)
            while True:
                status, data, elapsed, during = request(conn, "POST", "/v1/jobs", body,
                                                        {"Content-Type": ctype, "Idempotency-Key": key})
                rec.add("upload", status, elapsed, during)
                if status in (200, 201):
                    job = json.loads(data)["id"]
                    with accepted_lock:
                        if key in accepted and accepted[key] != job:
                            print(f"key {key} answered two jobs: {accepted[key]} and {job}", file=sys.stderr)
                        accepted.setdefault(key, job)
                    my_jobs.append(job)
                    break
                if status in (503, 0):
                    time.sleep(0.5)
                    continue
                print(f"upload {key}: unexpected {status}: {data[:200]!r}", file=sys.stderr)
                break
            for _ in range(args.reads_per_upload):
                choice = rng.random()
                if choice < 0.6 and my_jobs:
                    path, kind = f"/v1/jobs/{rng.choice(my_jobs)}", "get_job"
                elif choice < 0.9:
                    path, kind = "/v1/batches/load/jobs?limit=50", "list_batch"
                else:
                    path, kind = "/v1/stats", "stats"
                status, _, elapsed, during = request(conn, "GET", path)
                rec.add(kind, status, elapsed, during)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    # The outage, once the given fraction of uploads has been issued.
    while issued[0] < args.uploads * args.outage_after and any(t.is_alive() for t in threads):
        time.sleep(0.05)
    outage["start"] = time.perf_counter() - started
    if args.outage_for > 0:
        outage["on"] = True
        proxy.cut()
        time.sleep(args.outage_for)
        proxy.restore()
        outage["on"] = False
    outage["end"] = time.perf_counter() - started
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    # The server's peak resident memory over the run (for deploy/k8s's request and limit).
    peak_rss_mib = None
    try:
        for line in open(f"/proc/{serve.pid}/status"):
            if line.startswith("VmHWM:"):
                peak_rss_mib = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    serve.terminate()
    serve.wait(timeout=30)

    # Every accepted key is one job, in the database (asked directly, not through the API).
    ids = sorted(set(accepted.values()))
    found = subprocess.run(
        ["psql", "-X", "-q", "-t", "-A", args.db_url, "-c",
         "SELECT count(*) FROM jobs j JOIN batches b ON b.id = j.batch_id WHERE b.name = 'load' AND j.id::text = ANY(string_to_array('" + ",".join(ids) + "', ','))"],
        capture_output=True, text=True, check=True).stdout.strip()
    in_batch = subprocess.run(["psql", "-X", "-q", "-t", "-A", args.db_url, "-c",
                               "SELECT count(*) FROM jobs j JOIN batches b ON b.id = j.batch_id WHERE b.name = 'load'"],
                              capture_output=True, text=True, check=True).stdout.strip()

    def pct(values, q):
        values = sorted(values)
        return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else None

    report = {"uploads": args.uploads, "clients": args.clients, "photo_pad_mib": args.pad_mib, "wall_s": round(wall, 1), "serve_peak_rss_mib": peak_rss_mib,
              "outage_s": [round(outage["start"], 1), round(outage["end"], 1)],
              "accepted_keys": len(accepted), "distinct_jobs": len(ids),
              "jobs_found_in_db": int(found), "jobs_in_batch": int(in_batch), "by_kind": {}}
    for kind in ("upload", "get_job", "list_batch", "stats"):
        normal = [s for s in rec.samples if s[0] == kind and not s[3]]
        during = [s for s in rec.samples if s[0] == kind and s[3]]
        ok = [s[2] * 1000 for s in normal if 200 <= s[1] < 300]
        codes = {}
        for s in normal:
            codes[str(s[1])] = codes.get(str(s[1]), 0) + 1
        codes_out = {}
        for s in during:
            codes_out[str(s[1])] = codes_out.get(str(s[1]), 0) + 1
        report["by_kind"][kind] = {
            "requests": len(normal) + len(during),
            "p50_ms": round(pct(ok, 0.5), 1) if ok else None,
            "p99_ms": round(pct(ok, 0.99), 1) if ok else None,
            "mean_ms": round(statistics.mean(ok), 1) if ok else None,
            "status_outside_outage": codes,
            "status_during_outage": codes_out,
        }
    five_xx = {k: {c: n for c, n in v["status_outside_outage"].items() if c.startswith("5") or c == "0"}
               for k, v in report["by_kind"].items()}
    bad_outage = {k: {c: n for c, n in v["status_during_outage"].items() if c.startswith("5") and c != "503" or c == "0"}
                  for k, v in report["by_kind"].items()}
    report["errors_outside_outage"] = {k: v for k, v in five_xx.items() if v}
    report["non_503_errors_during_outage"] = {k: v for k, v in bad_outage.items() if v}
    report["lost"] = args.uploads - int(found)
    json.dump(report, open(args.out, "w"), indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
