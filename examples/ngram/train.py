"""A tiny character-level language model that really trains, on CPU, with the standard library only.

The data is generated here, deterministically, from a known second-order Markov source over a
12-symbol alphabet (one symbol = one byte), so the best achievable val_bpb is known: the source's
entropy rate, printed at the start. Two model families:

  ngram    add-k smoothed counts of the next symbol after the last ORDER symbols. Each training
           step adds one batch of text to the counts; the loss it prints is the model's bits per
           byte on that batch *before* learning it (prequential loss), so it falls as it learns.
  mixture  the counts of every order 0..ORDER, mixed with weights learned by SGD on the same
           prequential loss. The weights depend on how often the longest context has been seen
           (16 log2 buckets), so rare contexts lean on shorter ones (deleted interpolation).

Counts are complete after one pass over the training split; when STEPS * BATCH asks for more,
later passes score each token with its own count left out, so they only train mixture weights.

Checkpoints follow expctl's script contract: every CHECKPOINT_EVERY steps (and at the end of
training) the whole training state is written to EXPCTL_CHECKPOINT_DIR/checkpoint.json, aside and
renamed into place; with EXPCTL_RESUME=1 (a re-placed or retried run, restored by expctl) or an
EXPCTL_CHECKPOINT directory (`--checkpoint store:ID`) training continues from it, and a resumed run
ends with the same val_bpb as one never interrupted.

Output follows the autoresearch contract: `\r`-separated progress lines exactly like
autoresearch's train.py (`step 00012 (12.0%) | loss: 2.345678 | ... | remaining: 41s`), then `---`
and `key: value` lines. EXPCTL_TIME_BUDGET is training time only, as autoresearch's TIME_BUDGET.
Same code and config always give the same val_bpb.
"""

import argparse
import bisect
import json
import math
import os
import random
import sys
import time

# ---------------------------------------------------------------------------------------------
# Knobs an agent changes. Each may also be set from a JSON config file: `--config PATH` (or the
# EXPCTL_CONFIG environment variable), keys are the lowercase names, e.g. {"order": 2}.
# Unknown keys or values of the wrong type exit with status 2.
#
#   MODEL          "ngram" (longest context only) or "mixture" (all orders 0..ORDER, learned weights)
#   ORDER          context length in symbols, >= 1. The source has order 2. ORDER = 0 raises
#                  ValueError at startup: a natural crash to test failure handling with.
#   SMOOTHING      add-k pseudo-count per symbol, > 0 (SMOOTHING <= 0 raises ValueError)
#   INTERPOLATION  mixture only: initial weights of orders 0..ORDER (ORDER + 1 numbers > 0), or
#                  None for equal weights
#   LEARNING_RATE  mixture only: SGD step size for the mixture weights' logits (0 = fixed weights)
#   STEPS          training steps; each consumes BATCH symbols of the training split
#   BATCH          symbols per step. STEPS * BATCH < 200_000 leaves training text unused.
MODEL = "ngram"
ORDER = 1
SMOOTHING = 1.0
INTERPOLATION = None
LEARNING_RATE = 2.0
STEPS = 100
BATCH = 2000
# ---------------------------------------------------------------------------------------------

KNOBS = {
    "model": str,
    "order": int,
    "smoothing": float,
    "interpolation": list,
    "learning_rate": float,
    "steps": int,
    "batch": int,
}

CHECKPOINT_EVERY = 10  # steps between checkpoints (and one at the end of training)
CHECKPOINT_FILE = "checkpoint.json"

ALPHABET = b"etaoinshrdlu"  # 12 symbols, each one byte
V = len(ALPHABET)
TRAIN_SYMBOLS = 200_000
VAL_SYMBOLS = 50_000
HOLDOUT_SYMBOLS = 50_000  # `EXPCTL_EVALUATE=holdout`: a split of its own (see evaluate_holdout)
DATA_SEED = 1234
BUCKETS = 16  # mixture weights per log2 bucket of the longest context's count


def fail_config(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def load_config():
    parser = argparse.ArgumentParser(description="Train a tiny character-level n-gram model.")
    parser.add_argument("--config", help="JSON file of knob overrides (lowercase knob names)")
    args = parser.parse_args()
    path = args.config or os.environ.get("EXPCTL_CONFIG")
    if not path:
        return
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        fail_config(f"cannot read config {path}: {e}")
    if not isinstance(config, dict):
        fail_config(f"config {path} must be a JSON object")
    unknown = sorted(set(config) - set(KNOBS))
    if unknown:
        fail_config(f"unknown config keys {unknown} in {path}; known keys: {sorted(KNOBS)}")
    for key, value in config.items():
        kind = KNOBS[key]
        if key == "interpolation" and value is None:
            pass
        elif kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif not isinstance(value, kind) or isinstance(value, bool):
            fail_config(f"config key {key!r} must be {kind.__name__}, got {json.dumps(value)}")
        globals()[key.upper()] = value


def check_knobs():
    if MODEL not in ("ngram", "mixture"):
        raise ValueError(f'MODEL must be "ngram" or "mixture", got {MODEL!r}')
    if ORDER < 1:
        raise ValueError(f"ORDER must be at least 1, got {ORDER}")
    if SMOOTHING <= 0:
        raise ValueError(f"SMOOTHING must be positive, got {SMOOTHING}")
    if STEPS < 1 or BATCH < 1:
        raise ValueError(f"STEPS and BATCH must be at least 1, got {STEPS} and {BATCH}")
    if INTERPOLATION is not None:
        if len(INTERPOLATION) != ORDER + 1 or not all(isinstance(w, (int, float)) and w > 0 for w in INTERPOLATION):
            raise ValueError(f"INTERPOLATION must be {ORDER + 1} positive numbers (orders 0..ORDER), got {INTERPOLATION}")


# --- the source ---------------------------------------------------------------------------------

def make_source():
    """Second-order transition table: after each pair of symbols, a few successors dominate."""
    rng = random.Random(DATA_SEED)
    table = []
    for _ in range(V * V):
        weights = [rng.random() ** 6 for _ in range(V)]
        total = sum(weights)
        table.append([w / total for w in weights])
    return table  # table[a * V + b][c] = P(next = c | previous two = a, b)


def entropy_rate(table):
    """Exact bits per symbol of the source: its stationary distribution over pairs, then the mean entropy."""
    pi = [1.0 / (V * V)] * (V * V)
    for _ in range(1000):
        nxt = [0.0] * (V * V)
        for state, p in enumerate(pi):
            b = state % V
            for c, q in enumerate(table[state]):
                nxt[b * V + c] += p * q
        change = max(abs(x - y) for x, y in zip(pi, nxt))
        pi = nxt
        if change < 1e-15:
            break
    return sum(p * -sum(q * math.log2(q) for q in table[s] if q > 0) for s, p in enumerate(pi))


def sample(table, n, seed=DATA_SEED + 1):
    rng = random.Random(seed)
    cumulative = []
    for row in table:
        acc, cum = 0.0, []
        for q in row:
            acc += q
            cum.append(acc)
        cumulative.append(cum)
    a, b, out = 0, 1, []
    for _ in range(n + 100):  # 100 symbols of burn-in
        cum = cumulative[a * V + b]
        c = min(V - 1, bisect.bisect_right(cum, rng.random() * cum[-1]))
        out.append(c)
        a, b = b, c
    return out[100:]


# --- the model ----------------------------------------------------------------------------------

class Model:
    def __init__(self):
        self.orders = list(range(ORDER + 1)) if MODEL == "mixture" else [ORDER]
        self.counts = {k: {} for k in self.orders}  # order -> context id -> [count per symbol..., total]
        init = INTERPOLATION or [1.0] * (ORDER + 1)
        logits = [math.log(w / sum(init)) for w in init]
        self.logits = [list(logits) for _ in range(BUCKETS)]

    def mixture_weights(self):
        weights = []
        for z in self.logits:
            top = max(z)
            e = [math.exp(v - top) for v in z]
            s = sum(e)
            weights.append([v / s for v in e])
        return weights

    def run(self, data, start, end, mode, lr=0.0):
        """Mean bits per symbol of data[start:end]. mode: "learn" (score, then count each symbol),
        "loo" (counts frozen, each symbol scored with its own count left out) or "eval"."""
        a, av, top = SMOOTHING, SMOOTHING * V, ORDER
        learn, loo = mode == "learn", mode == "loo"
        orders, tables = self.orders, [self.counts[k] for k in self.orders]
        mixture = MODEL == "mixture"
        mods = [V ** k for k in range(top + 1)]
        weights = self.mixture_weights() if mixture else None
        grad = [[0.0] * (ORDER + 1) for _ in range(BUCKETS)] if mixture else None
        seen_in = [0] * BUCKETS
        bits = 0.0
        for i in range(start, end):
            x = data[i]
            ctx = 0
            for j in range(top, 0, -1):  # the most recent symbol is the lowest digit
                ctx = ctx * V + data[i - j]
            if not mixture:
                row = tables[0].get(ctx)
                if row is None:
                    if learn:
                        row = tables[0][ctx] = [0] * (V + 1)
                    seen = total = 0
                else:
                    seen, total = row[x] - loo, row[V] - loo
                bits -= math.log2((seen + a) / (total + av))
                if learn:
                    row[x] += 1
                    row[V] += 1
                continue
            probs = []
            for k, table in zip(orders, tables):
                c = ctx % mods[k] if k < top else ctx  # the last k symbols
                row = table.get(c)
                if row is None:
                    if learn:
                        row = table[c] = [0] * (V + 1)
                    seen = total = 0
                else:
                    seen, total = row[x] - loo, row[V] - loo
                probs.append((seen + a) / (total + av))
                if learn:
                    row[x] += 1
                    row[V] += 1
            bucket = min(BUCKETS - 1, total.bit_length())  # total: the longest context's count
            w = weights[bucket]
            p = sum(wk * pk for wk, pk in zip(w, probs))
            bits -= math.log2(p)
            g = grad[bucket]
            seen_in[bucket] += 1
            for k in range(top + 1):
                g[k] += w[k] - w[k] * probs[k] / p  # d(-ln p) / d logit_k
        n = max(1, end - start)
        if mixture and mode != "eval" and lr:
            for z, g, m in zip(self.logits, grad, seen_in):
                for k in range(top + 1):
                    z[k] -= lr * g[k] / max(1, m)  # the mean gradient of the bucket's symbols
        return bits / n

    def num_params(self):
        cells = sum(len(t) * V for t in self.counts.values())
        return cells + (BUCKETS * (ORDER + 1) if MODEL == "mixture" else 0)

    def to_json(self):
        return {
            "model": MODEL,
            "order": ORDER,
            "smoothing": SMOOTHING,
            "alphabet": ALPHABET.decode(),
            "context_id": "the previous k symbols as a base-12 number, x[i-1] its lowest digit (symbol = index in alphabet)",
            "counts": {str(k): {str(c): row for c, row in sorted(t.items())} for k, t in self.counts.items()},
            "mixture_weights_by_log2_count_bucket": self.mixture_weights() if MODEL == "mixture" else None,
        }


# --- checkpoints ----------------------------------------------------------------------------------

def knob_values():
    """What a checkpoint must agree with to be resumed: the knobs that shape the state."""
    return {"model": MODEL, "order": ORDER, "smoothing": SMOOTHING, "batch": BATCH, "steps": STEPS}


def save_checkpoint(directory, model, cursor, counted, steps_done, tokens):
    """The whole training state, written aside and renamed into place: expctl syncs only complete files."""
    state = {
        "knobs": knob_values(),
        "cursor": cursor,
        "counted": counted,
        "steps_done": steps_done,
        "tokens": tokens,
        "counts": {str(k): {str(c): row for c, row in t.items()} for k, t in model.counts.items()},
        "logits": model.logits,
    }
    aside = os.path.join(directory, f".{CHECKPOINT_FILE}.partial")
    with open(aside, "w") as f:
        json.dump(state, f)
    os.replace(aside, os.path.join(directory, CHECKPOINT_FILE))


def checkpoint_to_resume():
    """The checkpoint this run continues from: its own (EXPCTL_RESUME=1), else an initial one
    (EXPCTL_CHECKPOINT naming a directory that holds checkpoint.json), else None."""
    candidates = []
    if os.environ.get("EXPCTL_RESUME") == "1" and os.environ.get("EXPCTL_CHECKPOINT_DIR"):
        candidates.append(os.environ["EXPCTL_CHECKPOINT_DIR"])
    if os.environ.get("EXPCTL_CHECKPOINT") and os.path.isdir(os.environ["EXPCTL_CHECKPOINT"]):
        candidates.append(os.environ["EXPCTL_CHECKPOINT"])
    for directory in candidates:
        path = os.path.join(directory, CHECKPOINT_FILE)
        if os.path.exists(path):
            return path
    return None


def load_checkpoint(path, model):
    """Restores the state saved by save_checkpoint; None (start fresh) when its knobs differ from this run's."""
    with open(path) as f:
        state = json.load(f)
    if state.get("knobs") != knob_values():
        print(f"checkpoint {path} was made with {state.get('knobs')}, not {knob_values()}: starting fresh", flush=True)
        return None
    model.counts = {int(k): {int(c): row for c, row in t.items()} for k, t in state["counts"].items()}
    model.logits = state["logits"]
    return state["cursor"], state["counted"], state["steps_done"], state["tokens"]


def peak_rss_mb():
    try:
        import resource
    except ImportError:  # not on Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def load_dataset(directory):
    """A dataset version laid out by expctl (see prepare.py): JSON Lines shards in name order, the
    last one the validation split. Returns the symbols and how many of them are training symbols."""
    shards = sorted(name for name in os.listdir(directory) if name.endswith(".jsonl"))
    if len(shards) < 2:
        raise SystemExit(f"error: {directory} needs at least two .jsonl shards (training, then validation)")
    index = {symbol: i for i, symbol in enumerate(ALPHABET)}
    splits = []
    for name in shards:
        with open(os.path.join(directory, name)) as f:
            splits.append([index[c] for line in f if line.strip() for c in json.loads(line)["text"].encode()])
    train = [s for split in splits[:-1] for s in split]
    return train + splits[-1], len(train)


def evaluate_holdout(artifact):
    """`EXPCTL_EVALUATE=holdout` (expctl promote): scores the saved model.json on a holdout split drawn
    from the source with a seed of its own, text no run trained or was selected on, and prints it as
    the usual --- block (val_bpb is the holdout's bits per byte)."""
    global MODEL, ORDER, SMOOTHING
    t0 = time.time()
    with open(artifact) as f:
        saved = json.load(f)
    MODEL, ORDER, SMOOTHING = saved["model"], saved["order"], saved["smoothing"]
    model = Model()
    model.counts = {int(k): {int(c): row for c, row in t.items()} for k, t in saved["counts"].items()}
    if MODEL == "mixture":
        model.logits = [[math.log(max(w, 1e-300)) for w in ws] for ws in saved["mixture_weights_by_log2_count_bucket"]]
    stream = sample(make_source(), HOLDOUT_SYMBOLS, seed=DATA_SEED + 2)
    holdout_bpb = model.run(stream, ORDER, len(stream), "eval")
    print(f"holdout evaluation of {artifact}: {len(stream) - ORDER} symbols")
    print("---")
    print(f"val_bpb:          {holdout_bpb:.6f}")
    print(f"training_seconds: {0.0:.1f}")
    print(f"total_seconds:    {time.time() - t0:.1f}")
    print(f"peak_vram_mb:     {peak_rss_mb():.1f}")
    print(f"depth:            {ORDER}", flush=True)


def main():
    global TRAIN_SYMBOLS, VAL_SYMBOLS
    if os.environ.get("EXPCTL_EVALUATE") == "holdout":
        return evaluate_holdout(os.environ["EXPCTL_MODEL_ARTIFACT"])
    t0 = time.time()
    load_config()
    check_knobs()
    budget = os.environ.get("EXPCTL_TIME_BUDGET")
    budget = float(budget) if budget else None

    table = make_source()
    # A dataset version pinned by expctl (--dataset ngram@latest) when given, else the same data generated here.
    data_dir = os.environ.get("EXPCTL_DATASET_NGRAM") or os.environ.get("EXPCTL_DATASET_DIR")
    if data_dir:
        stream, TRAIN_SYMBOLS = load_dataset(data_dir)
        VAL_SYMBOLS = len(stream) - TRAIN_SYMBOLS
        print(f"data: {TRAIN_SYMBOLS} training and {VAL_SYMBOLS} validation symbols from {data_dir}", flush=True)
    else:
        stream = sample(table, TRAIN_SYMBOLS + VAL_SYMBOLS)
    true_val = -sum(math.log2(table[stream[i - 2] * V + stream[i - 1]][stream[i]])
                    for i in range(TRAIN_SYMBOLS, TRAIN_SYMBOLS + VAL_SYMBOLS)) / VAL_SYMBOLS
    print(f"source entropy rate: {entropy_rate(table):.4f} bits/byte "
          f"(the floor for val_bpb; the true source scores {true_val:.4f} on this val split)", flush=True)
    print(f"model {MODEL}, order {ORDER}, smoothing {SMOOTHING:g}, {STEPS} steps of {BATCH} symbols", flush=True)

    model = Model()
    crash = os.environ.get("EXPCTL_EXAMPLE_CRASH") == "1"
    oom = os.environ.get("EXPCTL_EXAMPLE_OOM") == "1"
    first = ORDER  # the first position with a full context
    cursor, counted, steps_done, tokens = first, False, 0, 0
    resume_from = checkpoint_to_resume()
    restored = load_checkpoint(resume_from, model) if resume_from else None
    if restored:
        cursor, counted, steps_done, tokens = restored
        print(f"resumed from {resume_from} after step {steps_done}/{STEPS} "
              f"(EXPCTL_RESUMED_FROM={os.environ.get('EXPCTL_RESUMED_FROM', '')})", flush=True)
    checkpoint_dir = os.environ.get("EXPCTL_CHECKPOINT_DIR")
    resumed_at = steps_done
    t_train = time.time()
    for step in range(steps_done, STEPS):
        if step == STEPS // 2 and crash:
            raise RuntimeError("EXPCTL_EXAMPLE_CRASH=1: crashing midway through training on purpose")
        if step == STEPS // 2 and oom:
            print("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB", file=sys.stderr, flush=True)
            sys.exit(1)
        if budget is not None and steps_done > resumed_at:
            # The budget is training time only (startup and the final evaluation are not in it),
            # as in autoresearch: stop when the next step would run past it.
            per_step = (time.time() - t_train) / (steps_done - resumed_at)
            if time.time() - t_train + per_step > budget:
                print(f"\ntime budget {budget:g}s: stopping after step {steps_done}/{STEPS}", flush=True)
                break
        t_step = time.time()
        loss, left = 0.0, BATCH
        while left:  # a batch may wrap around the end of the training split
            end = min(TRAIN_SYMBOLS, cursor + left)
            loss += model.run(stream, cursor, end, "loo" if counted else "learn", LEARNING_RATE) * (end - cursor)
            left -= end - cursor
            cursor = end
            if cursor == TRAIN_SYMBOLS:
                cursor, counted = first, True
        steps_done += 1
        tokens += BATCH
        dt = max(time.time() - t_step, 1e-6)
        trained = time.time() - t_train
        remaining = max(0.0, budget - trained) if budget is not None else dt * (STEPS - steps_done)
        lrm = 1.0 if MODEL == "mixture" else 0.0
        # autoresearch's progress line, byte for byte in shape: \r-separated, one line per step.
        print(f"\rstep {step:05d} ({100 * steps_done / STEPS:.1f}%) | loss: {loss / BATCH:.6f} | lrm: {lrm:.2f} | "
              f"dt: {dt * 1000:.0f}ms | tok/sec: {int(BATCH / dt):,} | mfu: 0.0% | epoch: {int(counted) + 1} | "
              f"remaining: {remaining:.0f}s    ", end="", flush=True)
        if checkpoint_dir and steps_done % CHECKPOINT_EVERY == 0:
            save_checkpoint(checkpoint_dir, model, cursor, counted, steps_done, tokens)
    if checkpoint_dir and steps_done % CHECKPOINT_EVERY:
        save_checkpoint(checkpoint_dir, model, cursor, counted, steps_done, tokens)
    print()  # newline after the \r progress lines
    training_seconds = time.time() - t_train

    val_bpb = model.run(stream, TRAIN_SYMBOLS, TRAIN_SYMBOLS + VAL_SYMBOLS, "eval")
    artifacts = os.environ.get("EXPCTL_ARTIFACT_DIR")
    if artifacts:
        os.makedirs(artifacts, exist_ok=True)
        with open(os.path.join(artifacts, "model.json"), "w") as f:
            json.dump({**model.to_json(), "val_bpb": round(val_bpb, 6), "num_steps": steps_done}, f)

    print("---")
    print(f"val_bpb:          {val_bpb:.6f}")
    print(f"training_seconds: {training_seconds:.1f}")
    print(f"total_seconds:    {time.time() - t0:.1f}")
    print(f"peak_vram_mb:     {peak_rss_mb():.1f}")
    print(f"mfu_percent:      {0.0:.2f}")
    print(f"total_tokens_M:   {tokens / 1e6:.1f}")
    print(f"num_steps:        {steps_done}")
    print(f"num_params_M:     {model.num_params() / 1e6:.1f}")
    print(f"depth:            {ORDER}", flush=True)


if __name__ == "__main__":
    main()
