"""kernels/norm.py: training batch norm as one node against conv._batch_norm_training."""

import numpy as np
import pytest
from agree import assert_agree, channels_last, taken

from minimal import functional as F
from minimal import kernels
from minimal.autograd import Tensor

rng = np.random.default_rng(4)


@pytest.mark.parametrize("shape, layout", [((6, 4), None), ((3, 4, 5, 2), None),
                                           ((3, 4, 5, 2), channels_last)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_kernel_matches_the_reference(shape, layout, affine):
    x = rng.standard_normal(shape) * 3 + 1
    x = x if layout is None else layout(x)
    c = shape[1]
    w, b = rng.standard_normal(c), rng.standard_normal(c)

    def normalise(*tensors):
        x, *affine_params = tensors
        return F.batch_norm(x, None, None, *affine_params, training=True)

    with taken("batch_norm") as calls:
        assert_agree(normalise, [x, w, b] if affine else [x], rtol=1e-8, atol=1e-9,
                     layout=layout)
    assert calls


def test_running_statistics_are_the_same_with_the_kernel():
    x = rng.standard_normal((5, 3, 4, 4)).astype(np.float32)
    stats = []
    for on in (True, False):
        mean, var = np.zeros(3, np.float32), np.ones(3, np.float32)
        with kernels.enabled(on):
            F.batch_norm(Tensor(x), mean, var, training=True, momentum=0.3)
        stats.append((mean, var))
    np.testing.assert_allclose(stats[0][0], stats[1][0], rtol=1e-6)
    np.testing.assert_allclose(stats[0][1], stats[1][1], rtol=1e-6)
    np.testing.assert_allclose(stats[0][1], 0.7 + 0.3 * x.var(axis=(0, 2, 3), ddof=1),
                               rtol=1e-5)
