#!/usr/bin/env python3
"""Hostile inputs for `scripts/chaos.sh hostile`: photos and .pth checkpoints crafted to
exhaust memory, the stack or the decoder, written with the standard library only.

    python3 scripts/chaos/hostile_files.py OUT_DIR REAL.jpg [REAL.pth]

writes OUT_DIR/photos/*.{png,jpg,...} (20 hostile photos) and OUT_DIR/pth/*.pth (crafted
checkpoints; the size-lie ones are derived from REAL.pth when given) and prints one line
per file: name, size, what it is meant to do.
"""
import os
import struct
import sys
import zipfile
import zlib


def png(path, width, height, colour_type, bit_depth=8, rows=None, bad_crc=False, raw_idat=None):
    """A PNG whose IDAT inflates to width x height pixels of zeros (or `rows`)."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    row_bytes = (width * channels * bit_depth + 7) // 8
    if raw_idat is None:
        compressor = zlib.compressobj(9)
        chunks = []
        zero_row = b"\x00" + (rows or b"\x00" * row_bytes)
        # Feed in slabs so building a 200 MB bomb does not need 200 MB here.
        slab = zero_row * max(1, min(height, (8 << 20) // len(zero_row)))
        left = height
        per_slab = len(slab) // len(zero_row)
        while left > 0:
            n = min(left, per_slab)
            chunks.append(compressor.compress(slab[: n * len(zero_row)]))
            left -= n
        chunks.append(compressor.flush())
        idat = b"".join(chunks)
    else:
        idat = raw_idat

    def chunk(kind, data):
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        if bad_crc and kind == b"IDAT":
            crc ^= 0xDEADBEEF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def jpeg_with_size(real, path, width, height):
    """The real JPEG with its SOF header claiming another size."""
    data = bytearray(open(real, "rb").read())
    i = 2
    while i < len(data) - 9:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", height, width)
            break
        i += 2 + length
    open(path, "wb").write(bytes(data))


def pickle_zip(path, pickle_bytes, extra=None):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/version", "3\n")
        for name, data in (extra or {}).items():
            z.writestr(name, data)


def tensor_pickle(shape, stride, storage_elems):
    """A state dict {'w': tensor} with the given geometry over storage '0' (float32)."""
    def tup(vals):
        body = b"".join(b"J" + struct.pack("<i", v) if v < 2**31 else b"\x8a\x08" + struct.pack("<q", v) for v in vals)
        return b"(" + body + b"t"

    return (
        b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01"
        b"ctorch._utils\n_rebuild_tensor_v2\nq\x02("
        b"(X\x07\x00\x00\x00storageq\x03ctorch\nFloatStorage\nq\x04X\x01\x00\x00\x000q\x05X\x03\x00\x00\x00cpuq\x06"
        + b"J" + struct.pack("<i", storage_elems)
        + b"tq\x07QK\x00" + tup(shape) + tup(stride)
        + b"\x89ccollections\nOrderedDict\nq\x08)Rq\x09tq\x0aRq\x0bs."
    )


def main():
    out, real_jpeg = sys.argv[1], sys.argv[2]
    real_pth = sys.argv[3] if len(sys.argv) > 3 else None
    photos = os.path.join(out, "photos")
    pth = os.path.join(out, "pth")
    os.makedirs(photos, exist_ok=True)
    os.makedirs(pth, exist_ok=True)
    made = []

    def note(name, what):
        made.append((name, what))

    # Decompression bombs inside the header limits (50 MP): tiny files, big decodes.
    for side, ct, label in [(3000, 0, "gray"), (5000, 2, "rgb"), (7000, 0, "gray"), (7000, 2, "rgb"), (7071, 6, "rgba"), (7071, 4, "gray-alpha")]:
        name = f"bomb-{side}-{label}.png"
        png(os.path.join(photos, name), side, side, ct)
        note(name, f"PNG bomb: {side}x{side} {label} of zeros, decodes to {side*side*{0:1,2:3,4:2,6:4}[ct]>>20} MiB")
    name = "bomb-7000-rgb16.png"
    png(os.path.join(photos, name), 7000, 7000, 2, bit_depth=16)
    note(name, "PNG bomb: 7000x7000 16-bit RGB, decodes to 280 MiB")
    # Header lies: sizes over the limits, with tiny bodies.
    for w, h, name in [(60000, 60000, "claims-60000x60000.png"), (16000, 16000, "claims-256MP.png")]:
        png(os.path.join(photos, name), w, h, 2, raw_idat=zlib.compress(b"\x00" * 1024))
        note(name, f"PNG header claims {w}x{h}, body has almost nothing")
    for w, h, name in [(65000, 65000, "claims-65000x65000.jpg"), (16000, 12000, "claims-192MP.jpg")]:
        jpeg_with_size(real_jpeg, os.path.join(photos, name), w, h)
        note(name, f"real JPEG whose SOF claims {w}x{h}")
    # Truncated and corrupt.
    real = open(real_jpeg, "rb").read()
    for pct in (5, 40, 90):
        name = f"truncated-{pct}.jpg"
        open(os.path.join(photos, name), "wb").write(real[: len(real) * pct // 100])
        note(name, f"real JPEG cut at {pct}%")
    name = "bad-crc.png"
    png(os.path.join(photos, name), 800, 600, 2, bad_crc=True)
    note(name, "PNG with a wrong IDAT checksum")
    name = "bad-zlib.png"
    png(os.path.join(photos, name), 800, 600, 2, raw_idat=b"\x78\x9c" + os.urandom(4096))
    note(name, "PNG whose IDAT is not a zlib stream")
    name = "garbage.jpg"
    open(os.path.join(photos, name), "wb").write(b"\xff\xd8\xff\xe0" + os.urandom(200_000))
    note(name, "JPEG magic followed by random bytes")
    name = "claims-30000x30000.bmp"
    dib = struct.pack("<IiiHHIIiiII", 40, 30000, 30000, 1, 24, 0, 0, 2835, 2835, 0, 0)
    body = b"\x00" * 4096
    open(os.path.join(photos, name), "wb").write(b"BM" + struct.pack("<IHHI", 54 + len(body), 0, 0, 54) + dib + body)
    note(name, "BMP header claims 30000x30000 (2.5 GiB of pixels), body has 4 KiB")
    name = "empty.png"
    open(os.path.join(photos, name), "wb").write(b"")
    note(name, "zero bytes")
    name = "huge-70MB.jpg"
    with open(os.path.join(photos, name), "wb") as f:
        f.write(real)
        f.write(b"\x00" * (70 * 1024 * 1024))
    note(name, "a real JPEG padded to 70 MB (over the 64 MiB input cap)")

    # Crafted checkpoints.
    deep = b"\x80\x02" + b"]" * 2_000_000 + b"."
    pickle_zip(os.path.join(pth, "deep-nesting.pth"), deep)
    note("deep-nesting.pth", "2 million nested lists (stack overflow in a recursive reader)")
    memo = b"\x80\x02]q\x00" + b"(h\x00h\x00h\x00h\x00h\x00h\x00h\x00h\x00lq\x00" * 200_000 + b"."
    pickle_zip(os.path.join(pth, "memo-growth.pth"), memo)
    note("memo-growth.pth", "a list memoised and copied eightfold 200k times (exponential growth)")
    dup = b"\x80\x02]" + b"2" * 5_000_000 + b"."
    pickle_zip(os.path.join(pth, "dup-flood.pth"), dup)
    note("dup-flood.pth", "5 million DUP opcodes")
    pickle_zip(os.path.join(pth, "huge-shape.pth"), tensor_pickle([1 << 20, 1 << 20, 1 << 20], [1 << 40, 1 << 20, 1], 16),
               {"archive/data/0": b"\x00" * 64})
    note("huge-shape.pth", "a tensor of 2^60 elements over 16 floats of storage")
    pickle_zip(os.path.join(pth, "zero-stride.pth"), tensor_pickle([4096, 4096], [0, 0], 1), {"archive/data/0": b"\x00" * 4})
    note("zero-stride.pth", "a 4096x4096 tensor with zero strides over one float")
    pickle_zip(os.path.join(pth, "storage-lie.pth"), tensor_pickle([1 << 28], [1], 1 << 28), {"archive/data/0": b"\x00" * 64})
    note("storage-lie.pth", "a storage declared 1 GiB with 64 bytes in the file")
    if real_pth:
        data = bytearray(open(real_pth, "rb").read())
        # Make every local header and central directory entry claim a 4 GiB uncompressed
        # size (the field sits at offset 22 and 24 of each record).
        for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
            i = data.find(signature)
            while i >= 0:
                data[i + size_at : i + size_at + 4] = struct.pack("<I", 0xFFFFFFF0)
                i = data.find(signature, i + 4)
        open(os.path.join(pth, "zip-size-lie.pth"), "wb").write(bytes(data))
        note("zip-size-lie.pth", "the real checkpoint with every zip entry claiming 4 GiB")
        open(os.path.join(pth, "truncated.pth"), "wb").write(open(real_pth, "rb").read()[: 3_000_000])
        note("truncated.pth", "the real checkpoint cut at 3 MB")

    for name, what in made:
        folder = pth if name.endswith(".pth") else photos
        print(f"{name}\t{os.path.getsize(os.path.join(folder, name))}\t{what}")


if __name__ == "__main__":
    main()
