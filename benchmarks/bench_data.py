"""Speed and difficulty of the synthetic data sets.

    python benchmarks/bench_data.py            # times + classifier check, cache in a temp dir

Prints: seconds to generate 10 000 digits and 10 000 shapes (cold, no cache), seconds for a
cache hit, the other generators' rates, and the held-out accuracy of a softmax regression and
a one-hidden-layer MLP (pure NumPy, independent of the project's autograd) trained on 10 000
synthetic digits: the stand-in should be neither trivial (softmax well below 100%) nor noise
(far above 10%), and the MLP should beat the linear model, as on MNIST (about 92% vs 98%).
"""

from __future__ import annotations

import itertools
import tempfile
import time

import numpy as np

from minimal import data


def softmax_cross_entropy_grad(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Gradient of the mean cross-entropy with respect to the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    probs[np.arange(len(labels)), labels] -= 1
    return probs / len(labels)


def train_classifier(x_train, y_train, x_test, y_test, hidden: int = 0, epochs: int = 15,
                     lr: float = 1e-3, seed: int = 0, batch: int = 64) -> float:
    """Adam on mean cross-entropy; hidden=0 is softmax regression, else a ReLU MLP.
    Returns held-out accuracy."""
    rng = np.random.default_rng(seed)
    x_train = x_train.reshape(len(x_train), -1).astype(np.float32)
    x_test = x_test.reshape(len(x_test), -1).astype(np.float32)
    sizes = [x_train.shape[1]] + ([hidden] if hidden else []) + [10]
    params = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        params.append(rng.normal(0, np.sqrt(2 / fan_in), (fan_in, fan_out)).astype(np.float32))
        params.append(np.zeros(fan_out, np.float32))
    moments = [np.zeros_like(p) for p in params]
    squares = [np.zeros_like(p) for p in params]
    step = 0

    def forward(x):
        activations = [x]
        for layer in range(0, len(params), 2):
            x = x @ params[layer] + params[layer + 1]
            if layer + 2 < len(params):
                x = np.maximum(x, 0)
            activations.append(x)
        return activations

    for _ in range(epochs):
        order = rng.permutation(len(x_train))
        for start in range(0, len(order), batch):
            index = order[start:start + batch]
            activations = forward(x_train[index])
            delta = softmax_cross_entropy_grad(activations[-1], y_train[index])
            grads = [None] * len(params)
            for layer in range(len(params) - 2, -1, -2):
                grads[layer] = activations[layer // 2].T @ delta
                grads[layer + 1] = delta.sum(axis=0)
                if layer > 0:
                    delta = (delta @ params[layer].T) * (activations[layer // 2] > 0)
            step += 1
            for i, grad in enumerate(grads):
                moments[i] = 0.9 * moments[i] + 0.1 * grad
                squares[i] = 0.999 * squares[i] + 0.001 * grad * grad
                corrected = moments[i] / (1 - 0.9 ** step)
                scale = np.sqrt(squares[i] / (1 - 0.999 ** step)) + 1e-8
                params[i] -= lr * corrected / scale
    predictions = forward(x_test)[-1].argmax(axis=1)
    return float((predictions == y_test).mean())


def timed(function, *args, **kwargs):
    """(result, wall seconds, CPU seconds of this process); the CPU figure is the fairer one on
    a machine shared with other jobs."""
    start, start_cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start, time.process_time() - start_cpu


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        (x_train, y_train), cold, cpu = timed(data.digits, 10_000, 0, "train", cache_dir=folder)
        _, hit, _ = timed(data.digits, 10_000, 0, "train", cache_dir=folder)
        print(f"digits  10000: generate {cold:6.2f} s (cpu {cpu:.2f} s)   cache hit {hit:5.3f} s")
        (s_train, s_labels), cold, cpu = timed(data.shapes, 10_000, 0, cache_dir=folder)
        _, hit, _ = timed(data.shapes, 10_000, 0, cache_dir=folder)
        print(f"shapes  10000: generate {cold:6.2f} s (cpu {cpu:.2f} s)   cache hit {hit:5.3f} s")
        _, cold, _ = timed(data.faces, 1000, 0, cache_dir=folder)
        print(f"faces    1000: generate {cold:6.2f} s (64 px)")
        _, cold, _ = timed(data.illustrations, 200, 0, 128, cache_dir=folder)
        print(f"illustrations 200: generate {cold:6.2f} s (128 px)")
        _, cold, _ = timed(data.chat_log, 100_000, 0, cache_dir=folder)
        _, hit, _ = timed(data.chat_log, 100_000, 0, cache_dir=folder)
        print(f"chat   100000: generate {cold:6.2f} s   cache hit {hit:5.3f} s")
        x_test, y_test = data.digits(2000, 0, "test", cache_dir=folder)
        s_test, s_test_labels = data.shapes(2000, 0, cache_dir=folder, split="test")
    linear, seconds, _ = timed(train_classifier, x_train, y_train, x_test, y_test, hidden=0)
    print(f"softmax regression on 10k digits: held-out accuracy {linear:.3f} ({seconds:.1f} s)")
    mlp, seconds, _ = timed(train_classifier, x_train, y_train, x_test, y_test, hidden=128,
                            epochs=10)
    print(f"MLP 784-128-10 on 10k digits:     held-out accuracy {mlp:.3f} ({seconds:.1f} s)")

    shapes_linear, seconds, _ = timed(train_classifier, s_train, s_labels, s_test,
                                      s_test_labels, hidden=0)
    print(f"softmax regression on 10k shapes: held-out accuracy {shapes_linear:.3f} "
          f"({seconds:.1f} s; chance 0.1: colour and background hint, the outline decides)")


if __name__ == "__main__":
    main()
