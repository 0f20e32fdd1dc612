#!/usr/bin/env python3
"""Check an fksteer fine-tuning dataset with nothing but the Python standard library.

    python3 scripts/check_dataset.py DATASET_DIR [EXPECTED_JSON] [--rows N]

It reads dataset.json, manifest.jsonl, the safetensors shards, groups.jsonl and pairs.jsonl the
way a PyTorch trainer would (docs/datasets.md), and checks that:

- every shard parses (8-byte little-endian header length, JSON header, offsets tiling the data),
  and every tensor key a manifest row names exists with the documented dtype and shape;
- no sample appears twice, and (for a complete dataset) dataset.json counts what the manifest holds;
- for the first N rows (default 64), every stored log-probability equals the Gaussian
  log-density recomputed from the exported x_t, x_{t-1}, mean and std, averaged over elements
  (NaN exactly where std is 0);
- advantages have mean 0 within each group (per prompt for ddpo);
- pairs name samples of one group, and their preference follows the rewards.

With EXPECTED_JSON (written by the Go test that runs this script) it also compares dtypes, shapes
and leading values of named tensors, bit for bit, with what the Go writer was given.
Exit status 0 when every check passes; 1 with a message naming the first failure.
"""

import argparse
import array
import json
import math
import os
import struct
import sys

DTYPES = {"F32": ("f", 4), "F16": ("e", 2), "I64": ("q", 8)}


class CheckError(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise CheckError(msg)


def read_safetensors(path):
    """Returns (metadata, {name: (dtype, shape, raw bytes)})."""
    with open(path, "rb") as f:
        data = f.read()
    check(len(data) >= 8, f"{path}: shorter than 8 bytes")
    (n,) = struct.unpack("<Q", data[:8])
    check(8 + n <= len(data), f"{path}: header length {n} exceeds the file")
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    body = data[8 + n :]
    meta = header.pop("__metadata__", {})
    tensors, spans = {}, []
    for name, e in header.items():
        dtype, shape, (b, end) = e["dtype"], e["shape"], e["data_offsets"]
        check(dtype in DTYPES, f"{path}: tensor {name} has dtype {dtype}")
        count = 1
        for d in shape:
            count *= d
        check(end - b == count * DTYPES[dtype][1], f"{path}: tensor {name} size does not match {dtype} {shape}")
        tensors[name] = (dtype, shape, body[b:end])
        spans.append((b, end, name))
    at = 0
    for b, end, name in sorted(spans, key=lambda s: (s[0], s[1])):
        check(b == at, f"{path}: tensor {name} starts at {b}, expected {at}")
        at = end
    check(at == len(body), f"{path}: tensors cover {at} of {len(body)} data bytes")
    return meta, tensors


def values(t):
    """Decodes a tensor's little-endian bytes into a flat list of Python numbers."""
    dtype, _, raw = t
    code, size = DTYPES[dtype]
    if dtype == "F16":
        return list(struct.unpack("<%de" % (len(raw) // 2), raw))
    a = array.array(code)
    a.frombytes(raw)
    if sys.byteorder == "big":
        a.byteswap()
    return a.tolist()


def bits(t):
    """The raw integer bit patterns of a tensor's elements, for exact comparison."""
    dtype, _, raw = t
    fmt = {"F32": "I", "F16": "H", "I64": "q"}[dtype]
    return list(struct.unpack("<%d%s" % (len(raw) // DTYPES[dtype][1], fmt), raw))


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def log_prob(x, mean, std):
    """DDPO's convention: log N(x; mean, std^2 I) averaged over the elements, in float64."""
    sq = 0.0
    for xi, mi in zip(x, mean):
        d = xi - mi
        sq += d * d
    n = len(x)
    return -sq / (2 * std * std * n) - math.log(std) - 0.5 * math.log(2 * math.pi)


def main(argv):
    parser = argparse.ArgumentParser(description="Check an fksteer fine-tuning dataset.")
    parser.add_argument("dataset", help="the dataset folder (holding dataset.json)")
    parser.add_argument("expected", nargs="?", help="JSON of tensors and values the writer was given")
    parser.add_argument("--rows", type=int, default=64, help="rows whose log-probabilities are recomputed")
    args = parser.parse_args(argv)
    root, max_rows = args.dataset, args.rows
    expected = None
    if args.expected:
        with open(args.expected, encoding="utf-8") as f:
            expected = json.load(f)

    with open(os.path.join(root, "dataset.json"), encoding="utf-8") as f:
        info = json.load(f)
    check(info["format"] == "fksteer-finetune" and info["version"] == 1, f"dataset.json: {info['format']} v{info['version']}")
    rows = read_jsonl(os.path.join(root, "manifest.jsonl"))
    shards = {}
    ids = set()
    for r in rows:
        check(r["id"] not in ids, f"sample {r['id']} appears twice")
        ids.add(r["id"])
        if r["shard"] not in shards:
            shards[r["shard"]] = read_safetensors(os.path.join(root, r["shard"]))
        meta, tensors = shards[r["shard"]]
        check(meta.get("format") == "fksteer-finetune", f"{r['shard']}: metadata {meta}")
        for name, key in r["tensors"].items():
            check(key in tensors, f"{r['id']}: tensor {key} missing from {r['shard']}")
        check(r["log_prob_convention"] == "gaussian-mean-over-elements", f"{r['id']}: convention {r['log_prob_convention']}")
    if info["complete"]:
        # An interrupted export may leave dataset.json's counts behind the manifest, which is the
        # authority; a complete one has them equal.
        check(len(rows) == info["samples"], f"manifest has {len(rows)} rows, dataset.json says {info['samples']}")
        check(sorted(shards) == sorted(info["shards"]), f"manifest names shards {sorted(shards)}, dataset.json {info['shards']}")

    # Recompute log-probabilities along each sample's own trajectory.
    checked = 0
    for r in rows[:max_rows]:
        _, tensors = shards[r["shard"]]
        t = lambda name: tensors[r["tensors"][name]]
        lat, idx, means, midx = t("latents"), t("latent_index"), t("means"), t("mean_index")
        k, steps_plus = idx[1]
        steps = steps_plus - 1
        check(lat[0] in ("F32", "F16") and means[0] == "F32" and idx[0] == "I64", f"{r['id']}: dtypes {lat[0]} {means[0]} {idx[0]}")
        check(t("log_probs")[1] == [k, steps] and t("stds")[1] == [steps] and t("timesteps")[1] == [steps], f"{r['id']}: step tensor shapes")
        size = 1
        for d in lat[1][1:]:
            size *= d
        check(means[1][1:] == lat[1][1:], f"{r['id']}: means {means[1]} and latents {lat[1]} differ in sample shape")
        lv, mv = values(lat), values(means)
        li, mi = values(idx), values(midx)
        stds, lps = values(t("stds")), values(t("log_probs"))
        i = r["index"]
        states = [lv[j * size : (j + 1) * size] for j in li[i * (steps + 1) : (i + 1) * (steps + 1)]]
        step_means = [mv[j * size : (j + 1) * size] for j in mi[i * steps : (i + 1) * steps]]
        tol = 1e-5 if lat[0] == "F32" else 5e-2
        for s in range(steps):
            stored = lps[i * steps + s]
            if stds[s] == 0:
                check(math.isnan(stored), f"{r['id']} step {s}: std 0 but log-prob {stored}")
                continue
            want = log_prob(states[s + 1], step_means[s], stds[s])
            check(abs(stored - want) <= tol * max(1.0, abs(want)), f"{r['id']} step {s}: stored log-prob {stored}, recomputed {want}")
            checked += 1

    # Advantages: mean 0 within each normalisation group.
    mode = info["mode"]
    if mode in ("ddpo", "grpo", "adv-grpo"):
        sums = {}
        for r in rows:
            key = r["prompt"] + "\0" + str(r.get("class")) if mode == "ddpo" else r["group"]
            if r["advantage"] is not None:
                sums.setdefault(key, []).append(r["advantage"])
        for key, adv in sums.items():
            check(abs(sum(adv)) < 1e-6 * len(adv), f"advantages of {key!r} sum to {sum(adv)}")

    by_id = {r["id"]: r for r in rows}
    for p in read_jsonl(os.path.join(root, "pairs.jsonl")):
        a, b = by_id.get(p["a"]), by_id.get(p["b"])
        check(a is not None and b is not None, f"pair {p['a']}/{p['b']} names a sample the manifest lacks")
        check(a["group"] == b["group"] == p["group"], f"pair {p['a']}/{p['b']} crosses groups")
        want = 0.5 if p["tie"] else (1 if a["reward"] > b["reward"] else 0)
        check(p["preferred"] == want, f"pair {p['a']}/{p['b']}: preferred {p['preferred']} for rewards {a['reward']}, {b['reward']}")

    if expected is not None:
        check(len(rows) == expected["samples"], f"{len(rows)} samples, the Go test wrote {expected['samples']}")
        for e in expected["tensors"]:
            _, tensors = shards.get(e["shard"]) or read_safetensors(os.path.join(root, e["shard"]))
            check(e["key"] in tensors, f"expected tensor {e['key']} missing")
            t = tensors[e["key"]]
            check(t[0] == e["dtype"] and t[1] == e["shape"], f"{e['key']}: {t[0]} {t[1]}, Go wrote {e['dtype']} {e['shape']}")
            got = bits(t)[: len(e["head_bits"])]
            check(got == e["head_bits"], f"{e['key']}: leading bits {got}, Go wrote {e['head_bits']}")
        for e in expected.get("values", []):
            r = by_id[e["id"]]
            _, tensors = shards[r["shard"]]
            got = values(tensors[r["tensors"][e["tensor"]]])[e["at"]]
            check(got == e["value"], f"{e['id']} {e['tensor']}[{e['at']}] = {got!r}, Go expected {e['value']!r}")

    print(f"ok: {len(rows)} samples in {len(shards)} shards, {checked} log-probabilities recomputed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except CheckError as e:
        print(f"check_dataset: {e}", file=sys.stderr)
        sys.exit(1)
