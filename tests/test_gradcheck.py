"""The gradient checker must be able to fail: a wrong first or second derivative, a bad eps."""

import numpy as np
import pytest

from minimal import autograd as ag
from minimal.autograd import Tensor, node
from minimal.gradcheck import check_grads


def wrong_square(a: Tensor) -> Tensor:
    """a^2 whose backward claims 2.1 a."""
    return node(a.data ** 2, (a,), lambda g: (g * a * 2.1,), "wrong_square")


def detached_square(a: Tensor) -> Tensor:
    """a^2 with a correct first derivative, but a backward that detaches a: its second
    derivative would come out as 0 instead of 2."""
    return node(a.data ** 2, (a,), lambda g: (g * a.detach() * 2,), "detached_square")


def wrong_broadcast_add(a: Tensor, b: Tensor) -> Tensor:
    """a + b whose backward forgets to sum b's gradient over the broadcast axis (takes row 0)."""
    return node(a.data + b.data, (a, b), lambda g: (g, g[0]), "wrong_broadcast_add")


x = np.random.default_rng(0).standard_normal((3, 4))


def test_correct_gradients_pass():
    check_grads(lambda a: a * a, [x], order=3)


def test_catches_wrong_first_derivative():
    with pytest.raises(AssertionError, match="order 1"):
        check_grads(wrong_square, [x], order=1)


def test_catches_wrong_second_derivative():
    check_grads(detached_square, [x], order=1)  # first order is right...
    with pytest.raises(AssertionError, match="order 2"):
        check_grads(detached_square, [x], order=2)  # ...the second is not


def test_catches_missing_broadcast_sum():
    with pytest.raises(AssertionError):
        check_grads(wrong_broadcast_add, [x, x[0]], order=1)


def test_catches_bad_eps():
    # a huge eps on a strongly curved function: the central difference is far off
    with pytest.raises(AssertionError):
        check_grads(lambda a: ag.exp(a * 5), [x], order=1, eps=0.3)
