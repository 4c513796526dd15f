import math

import numpy as np
import pytest

from minimal import kernels, nn, optim
from minimal.autograd import Parameter, Tensor
from minimal.errors import ConfigError, NonFiniteLossError


def test_adam_first_steps_closed_form():
    # with bias correction the first step is lr * sign(g) (up to eps), whatever |g| is
    p = Parameter(np.array([1.0, -2.0, 0.5]))
    adam = optim.Adam([p], lr=0.1)
    grads = [np.array([3.0, -0.01, 100.0]), np.array([1.0, 2.0, -1.0])]
    m = v = 0.0
    expected = p.data.copy()
    for t, g in enumerate(grads, start=1):
        p.grad = g.copy()
        adam.step()
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        expected -= 0.1 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        np.testing.assert_allclose(p.data, expected, rtol=1e-12)
        if t == 1:
            np.testing.assert_allclose(p.data, [0.9, -1.9, 0.4], rtol=1e-6)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_weight_decay_adds_decay_times_the_weight_to_the_gradient(momentum):
    """p -= lr (g + wd p): with a zero gradient the weight shrinks by lr * wd * p, towards 0."""
    p = Parameter(np.array([2.0, -4.0]))
    sgd = optim.SGD([p], lr=0.1, momentum=momentum, weight_decay=0.5)
    p.grad = np.zeros(2)
    sgd.step()
    np.testing.assert_allclose(p.data, [2.0 - 0.1 * 0.5 * 2.0, -4.0 + 0.1 * 0.5 * 4.0])
    p.grad = np.array([1.0, 1.0])
    previous = p.data.copy()
    sgd.step()
    velocity = momentum * 0.5 * np.array([2.0, -4.0]) + (1.0 + 0.5 * previous)
    np.testing.assert_allclose(p.data, previous - 0.1 * velocity)


@pytest.mark.parametrize("kernels_on", [True, False], ids=["kernel", "reference"])
def test_adam_weight_decay_is_added_to_the_gradient_before_the_moments(kernels_on):
    """g' = g + wd p (PyTorch's Adam, not AdamW), then the usual moments: three steps against
    the closed form, on the update's kernel and on its reference."""
    p = Parameter(np.array([1.0, -1.0, 3.0]))
    adam = optim.Adam([p], lr=0.1, weight_decay=0.3)
    grads = [np.array([-1.0, 1.0, -7.0]), np.array([0.2, 0.1, -0.4]), np.array([0.0, 0.5, 1.0])]
    m = v = 0.0
    expected = p.data.copy()
    with kernels.enabled(kernels_on):
        for t, g in enumerate(grads, start=1):
            p.grad = g.copy()
            adam.step()
            decayed = g + 0.3 * expected
            m = 0.9 * m + 0.1 * decayed
            v = 0.999 * v + 0.001 * decayed * decayed
            expected = expected - 0.1 * (m / (1 - 0.9 ** t)) / (
                np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
            np.testing.assert_allclose(p.data, expected, rtol=1e-12)


def rosenbrock(xy: Tensor) -> Tensor:
    x, y = xy[0], xy[1]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def test_adam_minimises_rosenbrock():
    p = Parameter(np.array([-1.5, 2.0]))
    adam = optim.Adam([p], lr=0.02)
    for _ in range(5000):
        adam.zero_grad()
        rosenbrock(p).backward()
        adam.step()
    np.testing.assert_allclose(p.data, [1.0, 1.0], atol=2e-3)


def test_sgd_momentum_matches_pytorch_form():
    p = Parameter(np.array([1.0]))
    sgd = optim.SGD([p], lr=0.1, momentum=0.9)
    for _ in range(2):
        p.grad = np.array([2.0])
        sgd.step()
    # v1 = 2, p = 1 - 0.2 = 0.8; v2 = 0.9*2 + 2 = 3.8, p = 0.8 - 0.38 = 0.42
    np.testing.assert_allclose(p.data, [0.42])


def test_sgd_trains_linear_regression():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3
    layer = nn.Linear(3, 1, rng=rng)
    sgd = optim.SGD(layer.parameters(), lr=0.1, momentum=0.5)
    for _ in range(200):
        sgd.zero_grad()
        ((layer(Tensor(x)) - Tensor(y)) ** 2).mean().backward()
        sgd.step()
    np.testing.assert_allclose(layer.weight.data, [[1.0, -2.0, 0.5]], atol=1e-3)
    np.testing.assert_allclose(layer.bias.data, [0.3], atol=1e-3)


def test_clip_grad_norm():
    a, b = Parameter(np.zeros(2)), Parameter(np.zeros(1))
    a.grad, b.grad = np.array([3.0, 0.0]), np.array([4.0])
    assert optim.clip_grad_norm([a, b], 1.0) == 5.0
    np.testing.assert_allclose(np.concatenate([a.grad, b.grad]), [0.6, 0, 0.8], rtol=1e-5)
    a.grad = np.array([0.3, 0.0])
    b.grad = np.array([0.4])
    optim.clip_grad_norm([a, b], 1.0)
    np.testing.assert_allclose(a.grad, [0.3, 0.0])  # under the limit: unchanged


# ------------------------------------------------------------ refused settings and states


@pytest.mark.parametrize("make, message", [
    (lambda p: optim.Adam(p, lr=math.nan), r"learning rate must be a finite number .* nan"),
    (lambda p: optim.Adam(p, lr=-1e-3), r"learning rate must be a finite number in \[0, inf\]"),
    (lambda p: optim.Adam(p, betas=(0.9, 1.0)), r"beta2 must be a finite number in \[0, 1\)"),
    (lambda p: optim.Adam(p, eps=0.0), r"eps must be > 0"),
    (lambda p: optim.Adam(p, weight_decay=math.inf), r"weight_decay must be a finite"),
    (lambda p: optim.SGD(p, lr=math.inf), r"learning rate must be a finite"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), r"momentum must be a finite number"),
])
def test_a_bad_hyperparameter_is_refused_at_construction(make, message):
    with pytest.raises(ConfigError, match=message):
        make([Parameter(np.zeros(3))])


@pytest.mark.parametrize("make", [lambda p: optim.Adam(p, lr=0.1),
                                  lambda p: optim.SGD(p, lr=0.1, momentum=0.9)])
def test_a_step_with_a_nan_gradient_changes_nothing_and_names_the_parameter(make):
    layer = nn.Linear(3, 2, rng=np.random.default_rng(0))
    optimizer = make(layer.parameters())
    for p in layer.parameters():
        p.grad = np.ones_like(p.data)
    optimizer.step()  # one good step, so the moments / velocities hold something
    before = [p.data.copy() for p in layer.parameters()]
    state = optimizer.state_dict()
    layer.weight.grad = np.ones_like(layer.weight.data)
    layer.bias.grad = np.array([1.0, np.nan], np.float32)
    with pytest.raises(NonFiniteLossError, match=r"gradient of parameter 1 \(shape \(2,\)\) "
                                                 r"holds nan; no parameter was changed"):
        optimizer.step()
    assert all(np.array_equal(a, p.data) for a, p in zip(before, layer.parameters()))
    after = optimizer.state_dict()
    assert all(np.array_equal(state[k], after[k]) for k in state)


def test_adam_refuses_a_state_that_does_not_fit_and_changes_nothing():
    params = [Parameter(np.ones((4, 3), np.float32)), Parameter(np.ones(2, np.float32))]
    adam = optim.Adam(params, lr=0.1)
    for p in params:
        p.grad = np.full_like(p.data, 0.5)
    adam.step()
    good = adam.state_dict()

    def changed(**edits):
        state = {k: v.copy() + 1 for k, v in good.items()}
        state.update(edits)
        return state

    cases = [
        (changed(**{"v.0": np.ones((1, 3))}), r"v.0 has shape \(1, 3\), expected \(4, 3\)"),
        (changed(extra=np.zeros(1)), r"unexpected \['extra'\]"),
        ({k: v for k, v in changed().items() if k != "m.1"}, r"missing \['m.1'\]"),
        (changed(**{"m.1": np.array([0.0, np.nan])}), r"m.1 holds NaN or inf"),
        (changed(**{"m.0": np.ones((4, 3), complex)}), r"m.0 holds complex128 values"),
        (changed(**{"v.1": np.array([-1.0, 1.0])}), r"v.1 holds negative values"),
        (changed(t=np.array(2.5)), r"t holds fractions"),
        (changed(t=np.array(-3)), r"t is -3"),
    ]
    for state, message in cases:
        with pytest.raises(ValueError, match=message):
            adam.load_state_dict(state)
        now = adam.state_dict()
        assert all(np.array_equal(good[k], now[k]) for k in good), message
    adam.load_state_dict(changed())
    assert adam.t == 2 and np.array_equal(adam.m[0], good["m.0"] + 1)


def test_sgd_state_round_trip_and_refusal():
    p = Parameter(np.ones(3))
    sgd = optim.SGD([p], lr=0.1, momentum=0.9)
    assert sgd.state_dict() == {}
    p.grad = np.ones(3)
    sgd.step()
    state = sgd.state_dict()
    other = optim.SGD([Parameter(np.ones(3))], lr=0.1, momentum=0.9)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.velocity[0], sgd.velocity[0])
    with pytest.raises(ValueError, match="unexpected"):
        other.load_state_dict({"velocity.3": np.ones(3)})
