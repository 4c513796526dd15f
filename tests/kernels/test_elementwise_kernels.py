"""kernels/elementwise.py and graph.py: the activations' forwards, the rows' add and the leaf
gradients against their references in autograd.py."""

import numpy as np
import pytest
from agree import assert_agree, channels_last, strided, taken

from minimal import functional as F
from minimal import kernels, nn
from minimal.autograd import (
    Tensor,
    _add_at,
    _leaf_gradients,
    _leaky_relu_slopes,
    _relu_mask,
    _sigmoid,
)

rng = np.random.default_rng(1)
LAYOUTS = {"contiguous": lambda x: x, "channels-last": channels_last, "strided": strided}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_kernels_equal_their_references_and_keep_the_layout(layout, dtype):
    x = LAYOUTS[layout]((rng.standard_normal((2, 3, 4, 5)) * 30).astype(dtype))
    x[0, 0, 0, :2] = (0.0, -0.0)
    for fn, args in ((_sigmoid, ()), (_relu_mask, ()), (_leaky_relu_slopes, (0.2,))):
        fast = kernels.TABLE[fn.__name__.lstrip("_")].run(x, *args)
        plain = fn.reference(x, *args)
        assert fast.dtype == plain.dtype == dtype
        np.testing.assert_allclose(fast, plain, rtol=2e-7 if dtype == np.float32 else 1e-15)
        if layout == "channels-last":  # conv outputs stay channels-last through activations
            assert fast.transpose(0, 2, 3, 1).flags.c_contiguous


def test_activations_through_autograd_match_at_first_and_second_order():
    x = rng.standard_normal((3, 4, 5)) * 4
    for name, fn in (("sigmoid", F.sigmoid), ("relu_mask", F.relu),
                     ("leaky_relu_slopes", lambda t: F.leaky_relu(t, 0.1))):
        with taken(name) as calls:
            assert_agree(fn, [x])
        assert calls, name


def test_sigmoid_kernel_does_not_overflow():
    x = np.array([-1000.0, -100.0, 0.0, 100.0, 1000.0], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        np.testing.assert_array_equal(kernels.TABLE["sigmoid"].run(x), _sigmoid.reference(x))


def test_rows_add_kernel_equals_np_add_at_with_repeats():
    out_shape = (6, 2, 3)
    index = np.array([[0, 5, 5], [2, 0, -1]])  # repeats and a negative index
    values = rng.standard_normal(index.shape + out_shape[1:])
    fast, plain = np.zeros(out_shape), np.zeros(out_shape)
    assert kernels.TABLE["add_at"].run(fast, index, values) is not NotImplemented
    _add_at.reference(plain, index, values)
    np.testing.assert_array_equal(fast, plain)


def test_rows_add_kernel_declines_other_indices():
    out = np.zeros((4, 3))
    for index, values in (((np.array([0, 1]), np.array([2, 2])), np.ones(2)),  # pairs
                          (np.array([0.0, 1.0]), np.ones((2, 3))),  # not integers
                          (np.array([1, 1]), np.ones(2))):  # values do not fill rows
        assert kernels.TABLE["add_at"].run(out, index, values) is NotImplemented
    assert not out.any()


def test_embedding_gradient_through_the_rows_kernel_matches():
    embedding = nn.Embedding(7, 3, rng=np.random.default_rng(0))
    ids = np.array([[1, 1, 6], [0, 6, 6]])
    with taken("add_at") as calls:
        assert_agree(lambda w: w[ids], [embedding.weight.data.astype(np.float64)])
    assert calls


def test_leaf_gradients_kernel_gives_every_leaf_an_array_of_its_own():
    """a + a hands one array to both of add's parents: each leaf must still own its .grad."""
    g = np.ones(3)
    view = np.arange(6.0)[::2]
    arrays = kernels.TABLE["leaf_gradients"].run([g, g, view])
    plain = _leaf_gradients.reference([g, g, view])
    for fast, ref in zip(arrays, plain):
        np.testing.assert_array_equal(fast, ref)
    assert arrays[0] is g  # handed over: a fresh product nothing else holds
    assert arrays[1] is not g and arrays[2] is not view  # a second claim, and a view, copied
    assert arrays[2].flags.owndata


def test_leaf_gradients_stay_separate_through_backward():
    a, b = Tensor(np.ones(3), requires_grad=True), Tensor(np.ones(3), requires_grad=True)
    with taken("leaf_gradients") as calls:
        (a + b).sum().backward()
    assert calls
    a.grad *= 5  # clip_grad_norm scales gradients in place
    np.testing.assert_array_equal(b.grad, np.ones(3))
