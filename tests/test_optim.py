import numpy as np

from minimal import nn, optim
from minimal.autograd import Parameter, Tensor


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
