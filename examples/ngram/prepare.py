"""Writes train.py's data as dataset shards, as a data producer would deliver them.

    python3 prepare.py OUT_DIR [--shards 4]

The same symbols train.py generates (same source, same seed), as JSON Lines: one record per line,
{"text": "<1000 symbols>"}. Shards 0..N-2 hold the training split, the last shard the validation
split (as in autoresearch's prepare.py, where the last data shard is the validation shard). Files
are named ngram-IIIII-of-NNNNN.jsonl, each with a FILE.sha256 beside it: the hash the producer
declares, which expctl's integrity gate checks.

    expctl data add ngram OUT_DIR/ngram-*.jsonl     # or: expctl data watch OUT_DIR
    expctl run ... --dataset ngram@latest -- python3 train.py
"""

import argparse
import hashlib
import json
import os

from train import ALPHABET, TRAIN_SYMBOLS, VAL_SYMBOLS, make_source, sample

RECORD_SYMBOLS = 1000


def records(symbols):
    for i in range(0, len(symbols), RECORD_SYMBOLS):
        yield {"text": bytes(ALPHABET[s] for s in symbols[i:i + RECORD_SYMBOLS]).decode("ascii")}


def main():
    parser = argparse.ArgumentParser(description="Write train.py's data as dataset shards.")
    parser.add_argument("out_dir")
    parser.add_argument("--shards", type=int, default=4, help="shards in all, the last one validation (>= 2)")
    args = parser.parse_args()
    if args.shards < 2:
        parser.error("--shards must be at least 2 (training shards, then one validation shard)")
    os.makedirs(args.out_dir, exist_ok=True)
    stream = sample(make_source(), TRAIN_SYMBOLS + VAL_SYMBOLS)
    train, val = stream[:TRAIN_SYMBOLS], stream[TRAIN_SYMBOLS:]
    per = -(-len(train) // (args.shards - 1))
    parts = [train[i * per:(i + 1) * per] for i in range(args.shards - 1)] + [val]
    for index, part in enumerate(parts):
        name = os.path.join(args.out_dir, f"ngram-{index:05d}-of-{args.shards:05d}.jsonl")
        text = "".join(json.dumps(record) + "\n" for record in records(part)).encode()
        with open(name, "wb") as f:
            f.write(text)
        with open(name + ".sha256", "w") as f:
            f.write(hashlib.sha256(text).hexdigest() + "\n")
        print(f"{name}: {len(part)} symbols, {-(-len(part) // RECORD_SYMBOLS)} records")


if __name__ == "__main__":
    main()
