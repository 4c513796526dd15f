"""kernels/dense.py: linear's NumPy backward against autograd.linear's reference."""

import numpy as np
import pytest
from agree import assert_agree, strided, taken

from minimal import functional as F
from minimal.autograd import Tensor

rng = np.random.default_rng(0)


@pytest.mark.parametrize("x_shape", [(5, 4), (3, 2, 4), (4,)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_kernel_matches_the_reference(x_shape, with_bias):
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal((3, 4)), rng.standard_normal(3)
    with taken("linear") as calls:
        if with_bias:
            assert_agree(lambda x, w, b: F.linear(x, w, b), [x, w, b])
        else:
            assert_agree(lambda x, w: F.linear(x, w), [x, w])
    assert calls


def test_linear_kernel_takes_non_contiguous_inputs():
    x, w = strided(rng.standard_normal((6, 5))), rng.standard_normal((5, 3)).T
    assert not x.flags.c_contiguous and not w.flags.c_contiguous
    assert_agree(lambda x, w, b: F.linear(x, w, b), [x, w, rng.standard_normal(3)])


def test_linear_kernel_leaves_bad_shapes_to_the_reference_error():
    with taken("linear") as calls, pytest.raises(ValueError, match=r"linear.*\(3, 5\).*\(2, 4\)"):
        F.linear(Tensor(np.ones((3, 5))), Tensor(np.ones((2, 4))))
    with pytest.raises(ValueError, match="bias"):
        F.linear(Tensor(np.ones((3, 4))), Tensor(np.ones((2, 4))), Tensor(np.ones(3)))
    assert calls == []


def test_under_create_graph_linear_is_differentiated_by_its_own_backward_not_a_subgraph():
    """Double backprop (TRPO's Fisher-vector products) through a kernel whose reference is one
    node uses that node's Tensor-op backward: re-differentiating it as a subgraph gives the
    same numbers several times slower."""
    from minimal.autograd import _topological_order, grad

    x = Tensor(rng.standard_normal((4, 3)), requires_grad=True)
    w = Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    with taken("linear") as calls:
        (g,) = grad((F.linear(x, w) ** 2).sum(), [w], create_graph=True)
    assert calls
    ops = {node._op for node in _topological_order([g])}
    assert "subgraph" not in ops and "matmul" in ops
