"""kernels/lstm.py: the whole-sequence LSTM node against nn._lstm_layer's step-by-step reference,
on its own and through nn.LSTM and nn.LSTMCell."""

import numpy as np
import pytest
from agree import assert_agree, taken

from minimal import nn
from minimal.autograd import Tensor

rng = np.random.default_rng(6)


@pytest.mark.parametrize("steps", [1, 4])
def test_lstm_layer_kernel_matches_the_reference(steps):
    batch, hidden = 3, 5
    arrays = [rng.standard_normal((steps, batch, 4 * hidden)), rng.standard_normal((batch, hidden)),
              rng.standard_normal((batch, hidden)), rng.standard_normal((4 * hidden, hidden)) * 0.5]
    with taken("lstm_layer") as calls:
        assert_agree(nn._lstm_layer, arrays, rtol=1e-8, atol=1e-10)
    assert calls


def test_lstm_and_cell_through_the_kernel_match_the_reference():
    lstm = nn.LSTM(3, 4, num_layers=2, rng=np.random.default_rng(0))
    cell = nn.LSTMCell(3, 4, rng=np.random.default_rng(1))
    for module in (lstm, cell):
        for p in module.parameters():
            p.data = p.data.astype(np.float64)
    x = rng.standard_normal((5, 2, 3))

    def through_lstm(x):
        return lstm(x)[0]

    def through_cell(x):
        h, c = cell(x[0])
        for t in range(1, x.shape[0]):
            h, c = cell(x[t], (h, c))
        return h

    with taken("lstm_layer") as calls:
        assert_agree(through_lstm, [x], order=1, rtol=1e-8, atol=1e-10)
        assert_agree(through_cell, [x], rtol=1e-8, atol=1e-10)
    assert len(calls) >= 2
    assert isinstance(through_cell(Tensor(x)), Tensor)
