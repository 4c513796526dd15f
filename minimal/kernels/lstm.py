"""The LSTM layer over a whole sequence as one node (reference: nn._lstm_layer, a loop of
nn._lstm_gates, ~15 small ops a step).

The recurrence and its backward through time in NumPy: a per-step graph of ~15 small ops costs
more in bookkeeping than the arithmetic. Three parts: `_forward` (the recurrence, keeping every
gate and cell), and for the backward `_gate_factors` (what does not depend on the incoming
gradient, all steps at once) and `_backward_through_time` (the loop from the last step to the
first).
"""

from __future__ import annotations

import numpy as np

from minimal.kernels.threads import for_blocks


def lstm_layer(x_part: np.ndarray, h0: np.ndarray, c0: np.ndarray, weight_hh: np.ndarray):
    """(value, backward) of the reference: x_part (T, B, 4H) the input's share of the gates,
    h0, c0 (B, H) -> (T + 1, B, H), the T hidden states and then the final cell state."""
    w = weight_hh
    out, gates, cells, tanh_cells = _forward(x_part, h0, c0, w)

    def backward(grad_out: np.ndarray, needs: tuple[bool, ...]):
        factors, via_output = _gate_factors(gates, cells, tanh_cells)
        return _backward_through_time(grad_out, gates, factors, via_output, w, h0, out)

    return out, backward


def _forward(xs: np.ndarray, h0: np.ndarray, c0: np.ndarray, w: np.ndarray):
    """The recurrence in NumPy: (out, gates, cells, tanh_cells), out (T + 1, B, H) the hidden
    states then the last cell, gates (T, B, 4H) after their nonlinearities, cells c_0 .. c_T.

    Each step is a handful of NumPy calls on (B, 4H) arrays, written into preallocated buffers;
    whatever does not depend on the previous step is done for all T steps at once, outside the
    loop (where the arrays are big enough to split over threads).
    """
    steps, hidden = xs.shape[0], w.shape[1]
    # all four gates with one tanh: sigmoid(z) = (tanh(z / 2) + 1) / 2 for i, f, o and tanh(z)
    # for g. Scaling by 1/2 is exact in floating point, so it can go into x_part and the weight.
    scale = np.full(4 * hidden, 0.5, xs.dtype)
    scale[2 * hidden:3 * hidden] = 1
    offset = 1 - scale
    scaled_xs = np.empty_like(xs)

    def scale_inputs(lo, hi):
        np.multiply(xs[lo:hi], scale, out=scaled_xs[lo:hi])

    for_blocks(scale_inputs, steps, xs.size)
    scaled_w = w.T * scale  # (H, 4H) contiguous: OpenBLAS's h @ w.T is ~25% slower than this
    out = np.empty((steps + 1,) + h0.shape, xs.dtype)
    gates = np.empty(xs.shape, xs.dtype)  # i, f, g, o after their nonlinearities, every step
    cells = np.empty((steps + 1,) + c0.shape, xs.dtype)  # c_0 .. c_T
    tanh_cells = np.empty((steps,) + c0.shape, xs.dtype)
    h, cells[0] = h0, c0
    for t in range(steps):
        act = gates[t]
        np.matmul(h, scaled_w, out=act)
        act += scaled_xs[t]
        np.tanh(act, out=act)
        act *= scale
        act += offset
        i, f, g, o = (act[:, k * hidden:(k + 1) * hidden] for k in range(4))
        np.multiply(f, cells[t], out=cells[t + 1])
        cells[t + 1] += i * g
        np.tanh(cells[t + 1], out=tanh_cells[t])
        h = np.multiply(o, tanh_cells[t], out=out[t])
    out[steps] = cells[steps]
    return out, gates, cells, tanh_cells


def _gate_factors(gates: np.ndarray, cells: np.ndarray, tanh_cells: np.ndarray):
    """What each gate's gradient is made of, for all steps at once (nothing here depends on
    the gradient flowing back): with dc the gradient of the cell and dh of the hidden state
    at a step,
        d z_i = dc g i(1-i),  d z_f = dc c_prev f(1-f),  d z_g = dc i (1-g^2)
        d z_o = dh tanh(c) o(1-o),  and dc takes dh o (1 - tanh(c)^2) from the output.
    Returns (factors, via_output): the four factors above in the gates' layout, and
    o (1 - tanh(c)^2).
    """
    steps, hidden = len(gates), gates.shape[-1] // 4
    factors = np.empty_like(gates)
    via_output = np.empty_like(tanh_cells)

    def gate_factors(lo, hi):
        act, fac = gates[lo:hi], factors[lo:hi]
        i, _, g, o = (act[..., k * hidden:(k + 1) * hidden] for k in range(4))
        np.subtract(1, act, out=fac)
        fac *= act  # s(1 - s), right for the sigmoid gates i, f, o
        np.multiply(g, g, out=fac[..., 2 * hidden:3 * hidden])
        np.subtract(1, fac[..., 2 * hidden:3 * hidden], out=fac[..., 2 * hidden:3 * hidden])
        fac[..., :hidden] *= g
        fac[..., hidden:2 * hidden] *= cells[lo:hi]  # c_prev of steps lo..hi-1
        fac[..., 2 * hidden:3 * hidden] *= i
        fac[..., 3 * hidden:] *= tanh_cells[lo:hi]
        np.multiply(tanh_cells[lo:hi], tanh_cells[lo:hi], out=via_output[lo:hi])
        np.subtract(1, via_output[lo:hi], out=via_output[lo:hi])
        via_output[lo:hi] *= o

    for_blocks(gate_factors, steps, 3 * gates.size)
    return factors, via_output


def _backward_through_time(d_out: np.ndarray, gates: np.ndarray, factors: np.ndarray,
                                via_output: np.ndarray, w: np.ndarray, h0: np.ndarray,
                                out: np.ndarray):
    """From the last step to the first: the gradient of every step's gate inputs, then of the
    initial hidden and cell state, and of weight_hh. Returns (d_gates, dh, dc, d_w)."""
    steps, hidden = len(gates), w.shape[1]
    d_gates = np.empty_like(gates)  # d loss / d z for every step
    dh, dc = np.zeros_like(h0), d_out[steps].copy()  # c_T feeds only the output
    for t in reversed(range(steps)):
        dh += d_out[t]
        dc += dh * via_output[t]
        dz = d_gates[t]
        # d z_i, d z_f, d z_g = dc times their factors, in one call on a (B, 3, H) view
        np.multiply(dc[:, None], factors[t, :, :3 * hidden].reshape(-1, 3, hidden),
                    out=dz[:, :3 * hidden].reshape(-1, 3, hidden))
        np.multiply(dh, factors[t, :, 3 * hidden:], out=dz[:, 3 * hidden:])
        np.matmul(dz, w, out=dh)
        dc *= gates[t, :, hidden:2 * hidden]  # f
    previous_h = np.concatenate([h0[None], out[:steps - 1]]).reshape(-1, hidden)
    d_w = d_gates.reshape(-1, 4 * hidden).T @ previous_h
    return d_gates, dh, dc, d_w
