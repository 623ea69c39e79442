"""A tiny character-level language model that really trains, on CPU, with the standard library only.

The data comes from a known second-order Markov source (fixed seed), so the best achievable
val_bpb is its entropy rate, printed at the start. The model is an interpolated n-gram model
learned online: each step adds one batch of training text to the counts, and the loss it
reports is the model's bits per byte on that batch *before* seeing it (prequential loss).

Output follows the autoresearch contract: progress lines, then `---` and `key: value` lines.
"""

import json
import math
import os
import random
import resource
import sys
import time

# ---------------------------------------------------------------------------
# Knobs an agent changes. Each may also be set from a JSON config (--config PATH,
# keys are the lowercase names). ORDER = 0 is rejected with an error (a crash to test with).
ORDER = 1            # context length in symbols (1..6); the source has order 2
SMOOTHING = 1.0      # add-k smoothing of each context's next-symbol counts
INTERPOLATE = False  # mix all orders 0..ORDER (True) or use only the longest context (False)
LAMBDA = 0.6         # with INTERPOLATE: weight of a context vs. its shorter fallbacks, per count seen
STEPS = 40           # training steps; each consumes an equal share of the training text
TRAIN_FRACTION = 1.0 # share of the training split to use (0..1]
# ---------------------------------------------------------------------------

ALPHABET = 12
TRAIN_SYMBOLS = 200_000
VAL_SYMBOLS = 50_000
KNOBS = {"order": int, "smoothing": float, "interpolate": bool, "lambda": float, "steps": int, "train_fraction": float}


def load_config(argv):
    if "--config" not in argv:
        return
    path = argv[argv.index("--config") + 1]
    with open(path) as f:
        config = json.load(f)
    unknown = sorted(set(config) - set(KNOBS))
    if unknown:
        print(f"error: unknown config keys {unknown}; known: {sorted(KNOBS)}", file=sys.stderr)
        sys.exit(2)
    for key, value in config.items():
        globals()[key.upper()] = KNOBS[key](value)


def make_source(seed=1234):
    """Second-order transition table: each pair of symbols prefers a few successors."""
    rng = random.Random(seed)
    table = {}
    for a in range(ALPHABET):
        for b in range(ALPHABET):
            weights = [rng.random() ** 6 for _ in range(ALPHABET)]
            total = sum(weights)
            table[(a, b)] = [w / total for w in weights]
    return table


def entropy_rate(table):
    """Exact bits per symbol of the source: stationary distribution over pairs, then mean entropy."""
    states = list(table)
    pi = {s: 1.0 / len(states) for s in states}
    for _ in range(200):
        nxt = dict.fromkeys(states, 0.0)
        for (a, b), p in pi.items():
            for c, q in enumerate(table[(a, b)]):
                nxt[(b, c)] += p * q
        pi = nxt
    return sum(pi[s] * -sum(q * math.log2(q) for q in table[s] if q > 0) for s in states)


def sample(table, n, seed):
    rng = random.Random(seed)
    a, b = 0, 1
    out = []
    for _ in range(n):
        c = rng.choices(range(ALPHABET), weights=table[(a, b)])[0]
        out.append(c)
        a, b = b, c
    return out


class NGram:
    def __init__(self, order, smoothing, interpolate, lam):
        self.order, self.k, self.interpolate, self.lam = order, smoothing, interpolate, lam
        self.counts = [dict() for _ in range(order + 1)]  # per order: context tuple -> [counts..., total]

    def _row(self, n, ctx):
        return self.counts[n].get(ctx)

    def prob(self, history, symbol):
        if not self.interpolate:
            row = self._row(self.order, tuple(history[-self.order:]))
            seen = row[symbol] if row else 0
            total = row[ALPHABET] if row else 0
            return (seen + self.k) / (total + self.k * ALPHABET)
        p = 1.0 / ALPHABET
        for n in range(0, self.order + 1):
            row = self._row(n, tuple(history[-n:]) if n else ())
            if not row:
                break
            total = row[ALPHABET]
            weight = total / (total + ALPHABET / max(self.lam, 1e-9))
            p = weight * (row[symbol] + self.k * p) / (total + self.k) + (1 - weight) * p
        return p

    def add(self, history, symbol):
        for n in range(0, self.order + 1):
            ctx = tuple(history[-n:]) if n else ()
            row = self.counts[n].setdefault(ctx, [0] * (ALPHABET + 1))
            row[symbol] += 1
            row[ALPHABET] += 1

    def bits(self, data, start, end):
        total = 0.0
        for i in range(start, end):
            total -= math.log2(self.prob(data[max(0, i - self.order):i], data[i]))
        return total / max(1, end - start)


def main():
    load_config(sys.argv[1:])
    if ORDER < 1:
        raise ValueError(f"ORDER must be at least 1, got {ORDER}")
    if not 0 < TRAIN_FRACTION <= 1:
        raise ValueError(f"TRAIN_FRACTION must be in (0, 1], got {TRAIN_FRACTION}")
    budget = float(os.environ.get("EXPCTL_TIME_BUDGET", "0")) or None
    t0 = time.time()
    table = make_source()
    print(f"source entropy rate: {entropy_rate(table):.4f} bits/byte (the floor for val_bpb)", flush=True)
    train = sample(table, TRAIN_SYMBOLS, seed=1)
    val = sample(table, VAL_SYMBOLS, seed=2)
    used = int(len(train) * TRAIN_FRACTION)
    model = NGram(ORDER, SMOOTHING, INTERPOLATE, LAMBDA)
    per_step = max(1, used // STEPS)
    steps_done = 0
    t_train = time.time()
    for step in range(STEPS):
        if os.environ.get("EXPCTL_EXAMPLE_CRASH") == "1" and step == STEPS // 2:
            raise RuntimeError("EXPCTL_EXAMPLE_CRASH is set: crashing midway on purpose")
        start, end = step * per_step, min(used, (step + 1) * per_step)
        loss = model.bits(train, start, end)
        for i in range(start, end):
            model.add(train[max(0, i - ORDER):i], train[i])
        steps_done += 1
        elapsed = time.time() - t0
        print(f"step {step + 1:05d}/{STEPS:05d} | loss {loss:.6f} | lr {1.0 / (step + 1):.3f} | elapsed {elapsed:.1f}s", flush=True)
        if budget is not None and elapsed > budget * 0.9:
            print(f"time budget of {budget:g}s nearly used: stopping after step {step + 1}", flush=True)
            break
    if os.environ.get("EXPCTL_EXAMPLE_OOM") == "1":
        print("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB", file=sys.stderr, flush=True)
        sys.exit(1)
    training_seconds = time.time() - t_train
    val_bpb = model.bits(val, 0, len(val))
    artifacts = os.environ.get("EXPCTL_ARTIFACT_DIR")
    if artifacts:
        with open(os.path.join(artifacts, "model.json"), "w") as f:
            json.dump({"order": ORDER, "counts": [{" ".join(map(str, k)): v for k, v in c.items()} for c in model.counts]}, f)
    num_params = sum(len(c) * (ALPHABET + 1) for c in model.counts)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("---")
    print(f"val_bpb:          {val_bpb:.6f}")
    print(f"training_seconds: {training_seconds:.1f}")
    print(f"total_seconds:    {time.time() - t0:.1f}")
    print(f"peak_vram_mb:     {peak_mb:.1f}")
    print(f"mfu_percent:      {0.0:.2f}")
    print(f"total_tokens_M:   {per_step * steps_done / 1e6:.1f}")
    print(f"num_steps:        {steps_done}")
    print(f"num_params_M:     {num_params / 1e6:.1f}")
    print(f"depth:            {ORDER}")


if __name__ == "__main__":
    main()
