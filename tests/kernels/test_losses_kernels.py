"""kernels/losses.py: the two single-node losses against their compositions in functional.py."""

import numpy as np
import pytest
from agree import assert_agree, taken

from minimal import functional as F
from minimal.autograd import Tensor

rng = np.random.default_rng(5)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ignore", [False, True])
def test_cross_entropy_kernel_matches_the_composition(reduction, ignore):
    logits = rng.standard_normal((9, 7)) * 3
    target = rng.integers(0, 7, 9)
    if ignore:
        target[[1, 4]] = -100
    with taken("cross_entropy") as calls:
        assert_agree(lambda x: F.cross_entropy(x, target, reduction=reduction), [logits])
    assert calls


@pytest.mark.parametrize("logits_shape, target, reduction", [
    ((4, 3, 2), np.zeros((4, 2), int), "mean"),  # (N, C, L): the composition
    ((4, 3), np.zeros(4, int), "none"),
    ((4, 3), np.array([0, 1, 2, 3]), "mean"),  # a target out of range: the reference's error
])
def test_cross_entropy_kernel_declines_what_it_does_not_cover(logits_shape, target, reduction):
    logits = Tensor(rng.standard_normal(logits_shape), requires_grad=True)
    with taken("cross_entropy") as calls:
        try:
            F.cross_entropy(logits, target, reduction=reduction)
        except ValueError as error:
            assert "targets must lie in [0, 3)" in str(error)
    assert calls == []


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_bce_with_logits_kernel_matches_the_composition_in_both_arguments(reduction):
    x, t = rng.standard_normal((4, 5)) * 6, rng.random((4, 5))
    with taken("binary_cross_entropy_with_logits") as calls:
        assert_agree(lambda x, t: F.binary_cross_entropy_with_logits(x, t, reduction), [x, t])
    assert calls


def test_bce_with_logits_kernel_declines_other_shapes_and_none():
    with taken("binary_cross_entropy_with_logits") as calls:
        F.binary_cross_entropy_with_logits(Tensor(np.ones((2, 3))), np.ones((2, 3)), "none")
        with pytest.raises(ValueError, match="differ"):
            F.binary_cross_entropy_with_logits(Tensor(np.ones((2, 3))), np.ones(3))
    assert calls == []
