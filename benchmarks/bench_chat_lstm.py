"""Training speed of the chat LSTM (minimal/demos/chat_lstm.py) against the same model in PyTorch.

    python benchmarks/bench_chat_lstm.py                  # 15 timed steps each, 1 thread
    python benchmarks/bench_chat_lstm.py --threads 2 --repeats 25 --messages 20000

One training step = the demo's: a batch of 64 chat messages (trimmed to the longest), embedding
200, dropout 0.5, 2-layer LSTM 200 with dropout between the layers, dropout, the output layer
and softmax cross-entropy on the real tokens only, backward, gradient-norm clip 5, Adam 5e-3.
Both engines get the same batches (the demo's rows of the generated chat log, read in order) and
the same initial weights. Steps alternate between the two engines (who goes first rotates) so
both see the same machine noise; the table gives median seconds per step, training tokens per
second (real next-word targets per step / time), and the ratio ours / PyTorch of the medians
from this one run. Target: ratio <= 1.3.

OPENBLAS_THREAD_TIMEOUT=4 is set before NumPy is imported (idle OpenBLAS threads otherwise spin
and steal a core from PyTorch); PyTorch runs at the same thread count (torch.set_num_threads).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
_threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1"
os.environ["OPENBLAS_NUM_THREADS"] = _threads  # read once, when NumPy is imported

import argparse
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from minimal import optim
from minimal.demos import chat_lstm as C
from minimal.kernels.process import tune_process

try:
    import torch
except ImportError:
    torch = None


def ours(config: C.Config, classes: int, rng: np.random.Generator):
    model, adam = C.build(config, classes, rng)
    params = model.parameters()

    def step(rows: np.ndarray) -> float:
        loss, _ = C.sequence_loss(model, rows)
        adam.zero_grad()
        loss.backward()
        optim.clip_grad_norm(params, config.clip)
        adam.step()
        return float(loss.data)

    return model, step


def theirs(config: C.Config, model: C.ChatModel):
    """The same model in PyTorch, starting from our initial weights."""
    tnn = torch.nn
    embedding = tnn.Embedding(model.embedding.num_embeddings, config.embed, padding_idx=C.PAD)
    lstm = tnn.LSTM(config.embed, config.hidden, config.layers, dropout=config.dropout)
    out = tnn.Linear(config.hidden, model.out.out_features)
    with torch.no_grad():
        embedding.weight.copy_(torch.from_numpy(model.embedding.weight.data))
        for name, value in lstm.named_parameters():
            value.copy_(torch.from_numpy(getattr(model.lstm, name).data))
        out.weight.copy_(torch.from_numpy(model.out.weight.data))
        out.bias.copy_(torch.from_numpy(model.out.bias.data))
    params = [*embedding.parameters(), *lstm.parameters(), *out.parameters()]
    adam = torch.optim.Adam(params, lr=config.lr)
    drop = tnn.Dropout(config.dropout)

    def step(rows: np.ndarray) -> float:
        length = int((rows != C.PAD).sum(1).max())
        inputs = torch.from_numpy(rows[:, :length - 1].T.astype(np.int64))
        targets = torch.from_numpy(rows[:, 1:length].T.reshape(-1).astype(np.int64))
        hidden, _ = lstm(drop(embedding(inputs)))
        hidden = drop(hidden).reshape(-1, config.hidden)
        real = torch.nonzero(targets != C.PAD).squeeze(1)
        loss = torch.nn.functional.cross_entropy(out(hidden[real]), targets[real],
                                                 ignore_index=C.PAD)
        adam.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.clip)
        adam.step()
        return loss.item()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS / torch threads")
    parser.add_argument("--repeats", type=int, default=15, help="timed steps per engine")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per engine")
    parser.add_argument("--messages", type=int, default=100_000,
                        help="chat messages (sets the vocabulary size, as in the demo)")
    args = parser.parse_args()
    config = C.Config(messages=args.messages)
    rng = np.random.default_rng(0)
    prepared = C.prepare(C.load_messages(config), config, rng)
    _, _, classes = C.special_ids(prepared["vocabulary"])
    model, our_step = ours(config, classes, rng)
    engines = {"ours": our_step}
    if torch is not None:
        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        engines["pytorch"] = theirs(config, model)
    else:
        print("torch is not installed: timing our engine alone")
    rows = prepared["train"]
    times: dict[str, list[float]] = {name: [] for name in engines}
    tokens = []
    for i in range(args.warmup + args.repeats):
        batch = C.batch_rows(rows, i, config.batch_size)
        order = list(engines) if i % 2 == 0 else list(reversed(engines))
        for name in order:
            time.sleep(0.05)  # let the other engine's threads go idle
            start = time.perf_counter()
            engines[name](batch)
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)
        if i >= args.warmup:
            tokens.append(int((batch[:, 1:] != C.PAD).sum()))
    per_step = float(np.mean(tokens))
    print(f"chat LSTM training step: vocabulary {classes} classes, batch {config.batch_size}, "
          f"{per_step:.0f} real tokens per step on average, {args.threads} thread(s), "
          f"{args.repeats} timed steps each")
    medians = {}
    for name, values in times.items():
        values = np.asarray(values)
        medians[name] = float(np.median(values))
        q1, q3 = np.percentile(values, [25, 75])
        spread = 100 * (q3 - q1) / medians[name]
        print(f"  {name:8s} {medians[name] * 1e3:7.1f} ms/step  "
              f"{per_step / medians[name]:8.0f} tokens/s  (spread {spread:.0f}%)")
    if "pytorch" in medians:
        ratio = medians["ours"] / medians["pytorch"]
        print(f"  ratio ours / pytorch: {ratio:.2f}x  (target <= 1.3x: "
              f"{'met' if ratio <= 1.3 else 'not met'})")


if __name__ == "__main__":
    tune_process()  # the entry points' process settings: minimal/kernels/process.py
    main()
