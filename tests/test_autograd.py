import numpy as np
import pytest

from minimal import autograd as ag
from minimal.autograd import Tensor, grad, no_grad
from minimal.gradcheck import check_grads

rng = np.random.default_rng(1234)


def randn(*shape):
    return rng.standard_normal(shape)


def positive(*shape):
    return rng.uniform(0.5, 2.0, shape)


# (name, function, inputs, highest order to check). Inputs are float64.
SMOOTH_CASES = [
    ("add broadcast", lambda a, b: a + b, [randn(3, 4), randn(4)], 2),
    ("add broadcast both", lambda a, b: a + b, [randn(3, 1), randn(1, 4)], 2),
    # a leading axis of 1 against a longer shape: the gradient sums the new axis and the 1s
    ("add leading ones", lambda a, b: a + b, [randn(1, 4), randn(1, 3, 4)], 2),
    ("mul leading ones", lambda a, b: a * b, [randn(2, 1, 4), randn(5, 1, 3, 1)], 2),
    ("sub", lambda a, b: a - b, [randn(2, 3), randn(2, 1)], 2),
    ("rsub scalar", lambda a: 2.0 - a, [randn(5)], 2),
    ("mul broadcast", lambda a, b: a * b, [randn(2, 3, 4), randn(3, 1)], 3),
    ("div", lambda a, b: a / b, [randn(3, 4), positive(4)], 3),
    ("rdiv scalar", lambda a: 1.0 / a, [positive(3)], 2),
    ("neg", lambda a: -a, [randn(3)], 2),
    ("pow number", lambda a: a ** 3, [randn(4)], 3),
    ("pow fractional", lambda a: a ** 1.5, [positive(4)], 3),
    ("pow tensor", lambda a, b: a ** b, [positive(3, 2), randn(2)], 2),
    ("matmul", lambda a, b: a @ b, [randn(3, 4), randn(4, 5)], 2),
    ("matmul batched broadcast", lambda a, b: a @ b, [randn(2, 3, 4), randn(4, 2)], 2),
    ("matmul vector left", lambda a, b: a @ b, [randn(4), randn(4, 3)], 2),
    ("matmul vector right", lambda a, b: a @ b, [randn(3, 4), randn(4)], 2),
    ("exp", lambda a: a.exp(), [randn(3, 2)], 3),
    ("log", lambda a: a.log(), [positive(3, 2)], 3),
    ("sqrt", lambda a: a.sqrt(), [positive(3)], 3),
    ("tanh", lambda a: a.tanh(), [randn(3, 2)], 3),
    ("sigmoid", lambda a: a.sigmoid(), [randn(3, 2) * 3], 3),
    ("softplus", ag.softplus, [randn(3, 2) * 3], 3),
    ("sum all", lambda a: (a * a).sum(), [randn(3, 4)], 2),
    ("sum axis", lambda a: (a * a).sum(axis=1), [randn(3, 4)], 2),
    ("sum axes keepdims", lambda a: (a * a).sum(axis=(0, 2), keepdims=True), [randn(2, 3, 4)], 2),
    ("mean", lambda a: (a * a).mean(axis=0), [randn(3, 4)], 2),
    ("var", lambda a: a.var(axis=1), [randn(3, 5)], 3),
    ("var ddof", lambda a: a.var(ddof=1), [randn(6)], 2),
    ("logsumexp", lambda a: ag.logsumexp(a, axis=1), [randn(3, 5) * 4], 3),
    ("reshape", lambda a: (a.reshape(4, 3) * a.reshape(4, 3)), [randn(2, 6)], 2),
    ("transpose", lambda a: a.transpose(2, 0, 1) * 2, [randn(2, 3, 4)], 2),
    ("T and swapaxes", lambda a: a.T @ a.swapaxes(0, 1).T, [randn(3, 2)], 2),
    ("slice", lambda a: a[1:, ::2] ** 2, [randn(4, 5)], 2),
    ("integer array index with repeats", lambda a: a[np.array([0, 2, 0, 0])] ** 2,
     [randn(3, 2)], 2),
    ("2-D integer array index, negative and repeated rows",
     lambda a: a[np.array([[1, -1], [2, 1]])] ** 2, [randn(3, 2, 2)], 2),
    ("fancy pair index", lambda a: a[np.array([0, 1, 1]), np.array([2, 0, 2])] ** 2,
     [randn(2, 3)], 2),
    ("concatenate", lambda a, b: ag.concatenate([a, b, a], axis=1) ** 2,
     [randn(2, 3), randn(2, 1)], 2),
    ("stack", lambda a, b: ag.stack([a, b], axis=1) ** 2, [randn(2, 3), randn(2, 3)], 2),
    ("split", lambda a: ag.split(a, [1, 3], axis=1)[1] * ag.split(a, 2, axis=0)[0][:, 1:3],
     [randn(2, 4)], 2),
    ("pad", lambda a: ag.pad(a, ((1, 0), (2, 1)), value=0.5) ** 2, [randn(2, 3)], 2),
    ("broadcast_to", lambda a: a.broadcast_to((3, 2, 4)) ** 2, [randn(2, 1)], 2),
    ("astype", lambda a: a.astype(np.float64) ** 2, [randn(3)], 2),
    ("where", lambda a, b: ag.where(np.array([True, False, True]), a * a, b * b),
     [randn(2, 3), randn(3)], 2),
]

# piecewise-linear ops: first order away from the kinks; second order is zero and must be zero
PIECEWISE_CASES = [
    ("relu", lambda a: a.relu() * a, [randn(4, 3)]),
    ("leaky_relu", lambda a: a.leaky_relu(0.2) * a, [randn(4, 3)]),
    ("abs", lambda a: a.abs() * a, [randn(5)]),
    ("clip", lambda a: a.clip(-0.5, 0.5) * a, [randn(6)]),
    ("maximum", lambda a, b: ag.maximum(a, b) * a, [randn(2, 3), randn(3)]),
    ("minimum", lambda a, b: ag.minimum(a, b) * b, [randn(2, 3), randn(3)]),
    ("max axis", lambda a: a.max(axis=1) ** 2, [randn(3, 4)]),
    ("min keepdims", lambda a: a.min(axis=0, keepdims=True) * a, [randn(3, 4)]),
    ("max all", lambda a: a.max() * a, [randn(3, 4)]),
]


@pytest.mark.parametrize("name,f,inputs,order", SMOOTH_CASES, ids=[c[0] for c in SMOOTH_CASES])
def test_smooth_op_gradients(name, f, inputs, order):
    check_grads(f, inputs, order=order)


@pytest.mark.parametrize("name,f,inputs", PIECEWISE_CASES, ids=[c[0] for c in PIECEWISE_CASES])
def test_piecewise_op_gradients(name, f, inputs):
    # the kinks have measure zero; random inputs and eps 1e-6 keep clear of them
    check_grads(f, inputs, order=2)


def test_reused_node_accumulates():
    a = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    b = a + a
    c = b * b  # c = 4 a^2, dc/da = 8 a
    c.sum().backward()
    np.testing.assert_allclose(a.grad, 8 * a.data)
    check_grads(lambda x: (x + x) * (x + x), [randn(3)], order=3)


def test_backward_accumulates_across_calls():
    a = Tensor(np.array([2.0]), requires_grad=True)
    (a * 3).sum().backward()
    (a * a).sum().backward()
    np.testing.assert_allclose(a.grad, [3 + 4.0])


def test_diamond_graph_shared_intermediate():
    x = Tensor(randn(4), requires_grad=True)
    h = x.exp()
    y = (h * x).sum() + (h / 2).sum() + h.sum()
    y.backward()
    np.testing.assert_allclose(x.grad, np.exp(x.data) * (x.data + 2.5))  # e^x x + e^x + e^x/2 + e^x


def test_deep_chain_is_iterative():
    x = Tensor(np.ones(3), requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 1.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.ones(3))


def test_hessian_vector_product_exact():
    # f(x) = sum(x^3) + (a.x)^2 has Hessian diag(6x) + 2 a a^T
    x0, a0, v0 = randn(5), randn(5), randn(5)
    x = Tensor(x0, requires_grad=True)
    a = Tensor(a0)
    f = (x ** 3).sum() + ((a * x).sum()) ** 2
    (g,) = grad(f, x, create_graph=True)
    (hv,) = grad((g * Tensor(v0)).sum(), x)
    np.testing.assert_allclose(hv.data, 6 * x0 * v0 + 2 * a0 * (a0 @ v0), rtol=1e-12)


def test_grad_of_intermediate_and_unused_inputs():
    x = Tensor(randn(3), requires_grad=True)
    unused = Tensor(randn(2), requires_grad=True)
    h = x * 2
    y = (h * h).sum()
    gh, gx, gu = grad(y, [h, x, unused])
    np.testing.assert_allclose(gh.data, 2 * h.data)
    np.testing.assert_allclose(gx.data, 8 * x.data)
    np.testing.assert_allclose(gu.data, 0)
    assert grad(y, [unused], allow_unused=True) == [None]
    assert x.grad is None  # grad() does not touch .grad


def test_grad_outputs_weights_a_vector_output():
    x = Tensor(randn(3), requires_grad=True)
    (g,) = grad(x * x, x, grad_outputs=Tensor(np.array([1.0, 0.0, 2.0])))
    np.testing.assert_allclose(g.data, 2 * x.data * [1, 0, 2])
    with pytest.raises(ValueError, match="not a scalar"):
        grad(x * x, x)


def test_no_grad_and_detach():
    x = Tensor(randn(3), requires_grad=True)
    with no_grad():
        y = x * 2
    assert not y.requires_grad and y._parents == ()
    z = (x.detach() * x).sum()
    z.backward()
    np.testing.assert_allclose(x.grad, x.data)  # the detached factor is a constant


def test_without_create_graph_gradients_have_no_graph():
    x = Tensor(randn(3), requires_grad=True)
    (g,) = grad((x ** 3).sum(), x)
    assert not g.requires_grad


def test_dtypes():
    assert Tensor([1, 2]).dtype == np.float32
    assert Tensor(np.zeros(2, np.float64)).dtype == np.float64
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    y = (x * 2.5 + 1) / 3 - x ** 2
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32
    assert (np.float64(2.0) * x).dtype == np.float32  # a NumPy scalar does not upcast


@pytest.mark.parametrize("op,a,b", [
    ("add", (2, 3), (4,)), ("mul", (2, 3), (3, 2)), ("matmul", (2, 3), (4, 5)),
    ("sub", (5,), (4,)), ("div", (2, 2), (3,))])
def test_shape_error_names_op_and_shapes(op, a, b):
    x, y = Tensor(np.zeros(a)), Tensor(np.zeros(b))
    f = {"add": ag.add, "mul": ag.mul, "matmul": ag.matmul, "sub": ag.sub, "div": ag.div}[op]
    with pytest.raises(ValueError) as info:
        f(x, y)
    assert op in str(info.value) and str(a) in str(info.value) and str(b) in str(info.value)


def test_reshape_error_names_shapes():
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\).*\(4,\)"):
        Tensor(np.zeros((2, 3))).reshape(4)


def test_large_logits_stay_finite():
    x = Tensor(np.array([1000.0, -1000.0, 0.0], np.float32), requires_grad=True)
    y = ag.softplus(x).sum() + x.sigmoid().sum() + ag.logsumexp(x, axis=0)
    y.backward()
    assert np.isfinite(y.data) and np.all(np.isfinite(x.grad))
    np.testing.assert_allclose(ag.softplus(Tensor(np.zeros(1))).data, [np.log(2)])


def test_linear_op_matches_composition():
    x, w, b = randn(4, 3), randn(5, 3), randn(5)
    np.testing.assert_allclose(ag.linear(Tensor(x), Tensor(w), Tensor(b)).data, x @ w.T + b)
    check_grads(lambda x, w, b: ag.linear(x, w, b).tanh(), [x, w, b], order=2)
    check_grads(lambda x, w: ag.linear(x, w) ** 2, [randn(2, 4, 3), w], order=2)
    with pytest.raises(ValueError, match=r"linear.*\(4, 2\).*\(5, 3\)"):
        ag.linear(Tensor(np.zeros((4, 2))), Tensor(w))



def test_linear_plain_backward_is_the_formula_and_the_recorded_one_bit_for_bit():
    """A backward without create_graph takes linear's NumPy path: the gradients of the
    written-out formula, and the same bits as the recorded Tensor-op backward."""
    rng = np.random.default_rng(8)
    x, w, b = (Tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True)
               for s in ((2, 4, 3), (5, 3), (5,)))
    g = rng.standard_normal((2, 4, 5)).astype(np.float32)
    out = ag.linear(x, w, b)
    plain = ag.grad(out, [x, w, b], Tensor(g))
    recorded = ag.grad(out, [x, w, b], Tensor(g), create_graph=True)
    rows, inputs = g.reshape(-1, 5), x.data.reshape(-1, 3)
    expected = [(rows @ w.data).reshape(x.shape), rows.T @ inputs, rows.sum(axis=0)]
    for p, r, e in zip(plain, recorded, expected, strict=True):
        assert p.dtype == np.float32 and not p.requires_grad
        np.testing.assert_array_equal(p.data, r.data)
        np.testing.assert_allclose(p.data, e, rtol=1e-6)


def test_gradients_of_a_value_used_many_times_add_up_on_both_paths():
    """A plain backward sums the gradients reaching a node in NumPy, without add nodes: the
    same bits as the recorded sum under create_graph, and the derivative written out."""
    rng = np.random.default_rng(9)
    x = Tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    w = Tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    h = x * w
    y = (h * h + h.exp() + x * 3 + (h * x).tanh()).sum()  # x and h each reach y several ways
    (plain_x, plain_w), (recorded_x, recorded_w) = (
        ag.grad(y, [x, w], create_graph=flag) for flag in (False, True))
    np.testing.assert_array_equal(plain_x.data, recorded_x.data)
    np.testing.assert_array_equal(plain_w.data, recorded_w.data)
    xd, wd = x.data.astype(np.float64), w.data.astype(np.float64)
    hd = xd * wd
    sech2 = 1 - np.tanh(hd * xd) ** 2
    np.testing.assert_allclose(plain_x.data, (2 * hd + np.exp(hd)) * wd + 3 + sech2 * 2 * hd,
                               rtol=1e-5)
    np.testing.assert_allclose(plain_w.data, (2 * hd + np.exp(hd)) * xd + sech2 * xd * xd,
                               rtol=1e-5)

def test_leaf_gradients_do_not_share_memory():
    a = Tensor(randn(3), requires_grad=True)
    b = Tensor(randn(3), requires_grad=True)
    seed = np.ones(3)
    (a + b).backward(seed)  # add hands the very same gradient array to both leaves
    a.grad *= 2  # e.g. clip_grad_norm scales in place
    np.testing.assert_allclose(b.grad, 1)
    np.testing.assert_allclose(seed, 1)


def test_scatter_add_of_rows_matches_add_at():
    """The flat fast path for whole rows must add exactly what np.add.at on rows adds."""
    rng = np.random.default_rng(5)
    index = rng.integers(-7, 7, (4, 9))  # repeats and negative rows
    g = rng.standard_normal((4, 9, 3, 2)).astype(np.float32)
    expected = np.zeros((7, 3, 2), np.float32)
    np.add.at(expected, index, g)
    out = ag.scatter_add(Tensor(g), index, (7, 3, 2))
    np.testing.assert_array_equal(out.data, expected)


@pytest.mark.parametrize("name,f,inputs", [(c[0], c[1], c[2]) for c in SMOOTH_CASES]
                         + [(c[0], c[1], c[2]) for c in PIECEWISE_CASES],
                         ids=[c[0] for c in SMOOTH_CASES + PIECEWISE_CASES])
def test_graph_is_freed_without_the_cycle_collector(name, f, inputs):
    """No node's backward may hold the node itself: such a reference cycle keeps the whole
    graph under it (activations, im2col matrices) alive until gc happens to run."""
    import gc
    leaves = [Tensor(x, requires_grad=True) for x in inputs]
    gc.collect()
    gc.disable()
    try:
        f(*leaves).sum().backward()
        assert gc.collect() == 0  # everything the step made was freed by reference counting
    finally:
        gc.enable()
