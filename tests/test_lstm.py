"""LSTMCell and LSTM against a plain NumPy loop (forward and hand-written backpropagation through
time) over 6 steps, final-state gradients included; gradient checks; names; dropout."""

import numpy as np
import pytest

from minimal import nn
from minimal.autograd import Tensor, grad
from minimal.gradcheck import check_grads

rng = np.random.default_rng(13)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def lstm_loop(x, h0, c0, layers):
    """Gate order i, f, g, o; returns outputs, (h_n, c_n) and what the backward pass needs."""
    caches, layer_input, hn, cn = [], x, [], []
    for k, p in enumerate(layers):
        h, c, steps, outputs = h0[k], c0[k], [], []
        for t in range(len(x)):
            z = layer_input[t] @ p["w_ih"].T + p["b_ih"] + h @ p["w_hh"].T + p["b_hh"]
            n = h.shape[1]
            i, f = sigmoid(z[:, :n]), sigmoid(z[:, n:2 * n])
            g, o = np.tanh(z[:, 2 * n:3 * n]), sigmoid(z[:, 3 * n:])
            c_new = f * c + i * g
            steps.append({"x": layer_input[t], "h": h, "c": c, "i": i, "f": f, "g": g, "o": o,
                          "c_new": c_new})
            h, c = o * np.tanh(c_new), c_new
            outputs.append(h)
        caches.append(steps)
        hn.append(h)
        cn.append(c)
        layer_input = np.stack(outputs)
    return layer_input, np.stack(hn), np.stack(cn), caches


def lstm_loop_backward(d_out, d_hn, d_cn, layers, caches):
    """Backpropagation through time, written out step by step, top layer first."""
    grads = [{name: np.zeros_like(value) for name, value in p.items()} for p in layers]
    d_h0, d_c0 = np.zeros_like(d_hn), np.zeros_like(d_cn)
    for k in reversed(range(len(layers))):
        p, d_inputs = layers[k], np.zeros((len(d_out),) + caches[k][0]["x"].shape)
        dh_next, dc_next = d_hn[k], d_cn[k]
        for t in reversed(range(len(d_out))):
            s = caches[k][t]
            dh = d_out[t] + dh_next
            tanh_c = np.tanh(s["c_new"])
            dc = dc_next + dh * s["o"] * (1 - tanh_c ** 2)
            dz = np.concatenate([dc * s["g"] * s["i"] * (1 - s["i"]),
                                 dc * s["c"] * s["f"] * (1 - s["f"]),
                                 dc * s["i"] * (1 - s["g"] ** 2),
                                 dh * tanh_c * s["o"] * (1 - s["o"])], axis=1)
            grads[k]["w_ih"] += dz.T @ s["x"]
            grads[k]["w_hh"] += dz.T @ s["h"]
            grads[k]["b_ih"] += dz.sum(0)
            grads[k]["b_hh"] += dz.sum(0)
            d_inputs[t] = dz @ p["w_ih"]
            dh_next, dc_next = dz @ p["w_hh"], dc * s["f"]
        d_h0[k], d_c0[k] = dh_next, dc_next
        d_out = d_inputs
    return d_out, d_h0, d_c0, grads


def _float64(module):
    for param in module.parameters():
        param.data = param.data.astype(np.float64)
    return module


def _loop_layers(model):
    return [{"w_ih": getattr(model, f"weight_ih_l{k}").data,
             "w_hh": getattr(model, f"weight_hh_l{k}").data,
             "b_ih": getattr(model, f"bias_ih_l{k}").data,
             "b_hh": getattr(model, f"bias_hh_l{k}").data} for k in range(model.num_layers)]


def test_lstm_matches_loop_forward_and_bptt_through_six_steps():
    steps, batch, inputs, hidden, layers = 6, 3, 5, 4, 2
    model = _float64(nn.LSTM(inputs, hidden, num_layers=layers, rng=rng))
    x = rng.standard_normal((steps, batch, inputs))
    h0, c0 = rng.standard_normal((2, layers, batch, hidden))
    xt, h0t, c0t = (Tensor(a, requires_grad=True) for a in (x, h0, c0))
    out, (hn, cn) = model(xt, (h0t, c0t))
    loop = _loop_layers(model)
    expected_out, expected_hn, expected_cn, caches = lstm_loop(x, h0, c0, loop)
    for ours, theirs in ((out, expected_out), (hn, expected_hn), (cn, expected_cn)):
        np.testing.assert_allclose(ours.data, theirs, rtol=1e-12, atol=1e-14)
    # a loss on every output and on both final states
    g_out, g_hn, g_cn = (rng.standard_normal(a.shape) for a in (out, hn, cn))
    ((out * Tensor(g_out)).sum() + (hn * Tensor(g_hn)).sum() + (cn * Tensor(g_cn)).sum()
     ).backward()
    d_x, d_h0, d_c0, grads = lstm_loop_backward(g_out, g_hn, g_cn, loop, caches)
    for ours, theirs in ((xt.grad, d_x), (h0t.grad, d_h0), (c0t.grad, d_c0)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    for k in range(layers):
        for ours, theirs in (("weight_ih", "w_ih"), ("weight_hh", "w_hh"), ("bias_ih", "b_ih"),
                             ("bias_hh", "b_hh")):
            np.testing.assert_allclose(getattr(model, f"{ours}_l{k}").grad, grads[k][theirs],
                                       rtol=1e-10, atol=1e-12)


def test_final_state_gradients_alone_and_second_order():
    model = _float64(nn.LSTM(3, 3, rng=rng))
    x = rng.standard_normal((5, 2, 3))
    h0, c0 = rng.standard_normal((2, 1, 2, 3))
    check_grads(lambda x, h, c: model(x, (h, c))[1][1], [x, h0, c0], order=2)  # c_n only
    check_grads(lambda x, h, c: model(x, (h, c))[1][0], [x, h0, c0], order=2)  # h_n only
    check_grads(lambda x, h, c: model(x, (h, c))[0], [x, h0, c0], order=1)


def test_cell_is_one_step_of_the_loop():
    cell = _float64(nn.LSTMCell(4, 3, rng=rng))
    x, h, c = rng.standard_normal((2, 4)), rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    h_new, c_new = cell(Tensor(x), (Tensor(h), Tensor(c)))
    layer = [{"w_ih": cell.weight_ih.data, "w_hh": cell.weight_hh.data,
              "b_ih": cell.bias_ih.data, "b_hh": cell.bias_hh.data}]
    out, _, expected_c, _ = lstm_loop(x[None], h[None], c[None], layer)
    np.testing.assert_allclose(h_new.data, out[0], rtol=1e-12)
    np.testing.assert_allclose(c_new.data, expected_c[0], rtol=1e-12)
    zeros_state = cell(Tensor(x))
    np.testing.assert_allclose(zeros_state[0].data,
                               lstm_loop(x[None], np.zeros((1, 2, 3)), np.zeros((1, 2, 3)),
                                         layer)[0][0], rtol=1e-12)
    check_grads(lambda x, h, c: cell(x, (h, c))[0] * cell(x, (h, c))[1], [x, h, c], order=2)



def test_cell_fast_backward_matches_the_graph_of_small_ops():
    """A 2-D cell runs as one step of the whole-sequence node (NumPy backward): every gradient,
    the weights' included, equals the one through `_lstm_gates`' graph of small ops, which
    the tests above check against the loop and central differences."""
    cell = _float64(nn.LSTMCell(4, 3, rng=rng))
    x, h, c = (Tensor(rng.standard_normal((5, n)), requires_grad=True) for n in (4, 3, 3))
    weights = rng.standard_normal((2, 5, 3))
    params = list(cell.parameters())

    def gradients(step):
        h_new, c_new = step()
        loss = (h_new * Tensor(weights[0])).sum() + (c_new * Tensor(weights[1])).sum()
        return grad(loss, [x, h, c] + params)

    fast = gradients(lambda: cell(x, (h, c)))
    small_ops = gradients(lambda: nn._lstm_gates(
        x @ cell.weight_ih.T + (cell.bias_ih + cell.bias_hh), h, c, cell.weight_hh))
    for a, b in zip(fast, small_ops, strict=True):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-12, atol=1e-14)
    sequence = cell(Tensor(x.data[None]), (h, c))  # 3-D input: the small-op path, same values
    np.testing.assert_allclose(sequence[0].data[0], cell(x, (h, c))[0].data, rtol=1e-12)

def test_pytorch_names_shapes_and_init():
    model = nn.LSTM(10, 6, num_layers=2, rng=np.random.default_rng(0))
    assert [(name, p.shape) for name, p in model.named_parameters()] == [
        ("weight_ih_l0", (24, 10)), ("weight_hh_l0", (24, 6)), ("bias_ih_l0", (24,)),
        ("bias_hh_l0", (24,)), ("weight_ih_l1", (24, 6)), ("weight_hh_l1", (24, 6)),
        ("bias_ih_l1", (24,)), ("bias_hh_l1", (24,))]
    assert all(np.abs(p.data).max() <= 1 / np.sqrt(6) for p in model.parameters())
    cell = nn.LSTMCell(10, 6)
    assert [name for name, _ in cell.named_parameters()] == ["weight_ih", "weight_hh",
                                                             "bias_ih", "bias_hh"]
    out, (hn, cn) = model(Tensor(np.zeros((7, 3, 10), np.float32)))
    assert out.shape == (7, 3, 6) and hn.shape == cn.shape == (2, 3, 6)
    assert out.dtype == np.float32
    with pytest.raises(ValueError, match=r"LSTM: input must be \(T, B, 10\), got shape "
                                         r"\(7, 3, 9\)"):
        model(Tensor(np.zeros((7, 3, 9))))
    with pytest.raises(ValueError, match=r"LSTM: initial state shapes \(1, 3, 6\)"):
        model(Tensor(np.zeros((7, 3, 10))), (Tensor(np.zeros((1, 3, 6))),) * 2)


def test_dropout_between_layers_only_while_training():
    def build():
        return nn.LSTM(4, 5, num_layers=2, dropout=0.5, rng=np.random.default_rng(1))

    x = Tensor(rng.standard_normal((6, 2, 4)))
    a, b = build(), build()
    np.testing.assert_array_equal(a(x)[0].data, b(x)[0].data)  # same seed, same masks
    trained = a(x)[0].data
    a.eval()
    evaluated = a(x)[0].data
    assert not np.allclose(trained, evaluated)
    np.testing.assert_array_equal(evaluated, a(x)[0].data)  # eval is deterministic
    plain = nn.LSTM(4, 5, num_layers=2, rng=np.random.default_rng(1))
    np.testing.assert_allclose(evaluated, plain(x)[0].data)  # eval = no dropout
    with pytest.raises(ValueError, match="dropout"):
        nn.LSTM(4, 5, dropout=1.0)


def test_against_torch_state_dict_when_installed():
    torch = pytest.importorskip("torch")
    model = _float64(nn.LSTM(5, 4, num_layers=2, rng=rng))
    reference = torch.nn.LSTM(5, 4, num_layers=2).double()
    model.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()})
    x = rng.standard_normal((6, 3, 5))
    out, (hn, cn) = model(Tensor(x))
    t_out, (t_hn, t_cn) = reference(torch.tensor(x))
    for ours, theirs in ((out, t_out), (hn, t_hn), (cn, t_cn)):
        np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_dropout_module_scales_kept_entries_and_is_off_in_eval():
    layer = nn.Dropout(0.25, rng=np.random.default_rng(2))
    x = Tensor(np.ones((200, 50)))
    out = layer(x).data
    kept = out != 0
    np.testing.assert_allclose(out[kept], 1 / 0.75)  # inverted dropout keeps the mean
    assert abs(kept.mean() - 0.75) < 0.02
    layer.eval()
    np.testing.assert_array_equal(layer(x).data, x.data)
