"""VAE demo: the KL term, the bounds on a model with an exact likelihood, gradients of a whole
training step, learning, exact resume, the NaN guard, and the data paths."""

import gzip
import struct

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import multivariate_normal

from minimal.app import cli
from minimal.autograd import Tensor
from minimal.demos import vae
from minimal.errors import DataError, NonFiniteLossError

# ----------------------------------------------------------------------------- the KL term

def test_kl_matches_the_integral_and_a_monte_carlo_estimate():
    rng = np.random.default_rng(0)
    mean = rng.normal(0, 1.5, size=(3, 4))
    log_var = rng.normal(0, 1.0, size=(3, 4))
    kl = vae.gaussian_kl(Tensor(mean), Tensor(log_var)).data  # (3, 4): one number per dim

    # closed form by numerical integration of q log(q / p), one dimension at a time
    def integral(m, lv):
        s = np.exp(0.5 * lv)
        def q(z):
            return np.exp(-0.5 * ((z - m) / s) ** 2) / (s * np.sqrt(2 * np.pi))

        def p(z):
            return np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)

        return integrate.quad(lambda z: q(z) * (np.log(q(z)) - np.log(p(z))),
                              m - 12 * s, m + 12 * s)[0]

    for i in range(3):
        for j in range(4):
            assert kl[i, j] == pytest.approx(integral(mean[i, j], log_var[i, j]), rel=1e-7)

    # Monte Carlo: E_q[log q(z) - log p(z)] with z from the demo's reparameterisation
    n = 200_000
    m_rep, lv_rep = np.repeat(mean[:1], n, 0), np.repeat(log_var[:1], n, 0)
    z = vae.reparameterise(Tensor(m_rep), Tensor(lv_rep), rng).data
    samples = (vae.log_normal(z, m_rep, lv_rep)
               - vae.log_normal(z, np.zeros_like(z), np.zeros_like(z)))
    standard_error = samples.std() / np.sqrt(n)
    assert abs(samples.mean() - kl[0].sum()) < 4 * standard_error
    # a wrong KL (the log-variance term with a factor 2, say) is far outside that band
    assert 4 * standard_error < 0.05 * abs(log_var[0]).sum()


def test_bernoulli_log_likelihood_by_hand_and_at_extreme_logits():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, size=(2, 1, 28, 28))
    x = (rng.random((2, 1, 28, 28)) < 0.4).astype(np.float64)
    p = 1 / (1 + np.exp(-logits))
    expected = (x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(2, -1).sum(1)
    np.testing.assert_allclose(vae.bernoulli_log_likelihood(logits, x), expected, rtol=1e-10)
    # far-out logits: the right pixel costs ~0, the wrong one costs |l| nats, never inf
    big = np.full((1, 1, 28, 28), 500.0)
    assert vae.bernoulli_log_likelihood(big, np.ones_like(big))[0] == pytest.approx(0, abs=1e-9)
    assert vae.bernoulli_log_likelihood(big, np.zeros_like(big))[0] == pytest.approx(-500 * 784)


# ----------------------------------------- the bounds, on a model whose log p(x) is exact

def _ppca(rng, d=2, dim_x=5, sigma=0.5, orthogonal=False):
    """Probabilistic PCA: z ~ N(0, I), x | z ~ N(W z + b, sigma^2 I)."""
    w = rng.normal(0, 1, size=(dim_x, d))
    if orthogonal:  # then the exact posterior's covariance is diagonal
        w = np.linalg.qr(w)[0] * np.array([2.0, 0.7])
    b = rng.normal(0, 1, size=dim_x)
    xs = rng.multivariate_normal(b, w @ w.T + sigma**2 * np.eye(dim_x), size=200)
    log_px = multivariate_normal(b, w @ w.T + sigma**2 * np.eye(dim_x)).logpdf(xs)
    # the exact posterior N(M^-1 W^T (x - b) / sigma^2 ... ), M = I + W^T W / sigma^2
    precision = np.eye(d) + w.T @ w / sigma**2
    cov = np.linalg.inv(precision)
    post_mean = (xs - b) @ w @ cov.T / sigma**2

    def log_likelihood(z, rows):
        return vae.log_normal(xs[rows], z @ w.T + b, np.full(dim_x, 2 * np.log(sigma)))

    def elbo(mean, log_var):  # E_q log p(x|z) in closed form, minus the analytic KL
        residual = ((xs - mean @ w.T - b) ** 2).sum(1) + (np.exp(log_var) @ (w**2).sum(0))
        expected = -0.5 * dim_x * np.log(2 * np.pi * sigma**2) - residual / (2 * sigma**2)
        return expected - vae.gaussian_kl(Tensor(mean), Tensor(log_var)).data.sum(1)

    return log_likelihood, log_px, post_mean, np.log(np.diag(cov)), elbo


def test_elbo_below_iwae_below_log_px_and_tightening_with_k():
    rng = np.random.default_rng(2)
    log_likelihood, log_px, post_mean, post_log_var, elbo = _ppca(rng)
    # an encoder that is close but not right: shifted means, too-narrow variances
    mean = post_mean + 0.3
    log_var = np.tile(post_log_var - 1.0, (len(mean), 1))
    analytic_elbo = elbo(mean, log_var)
    assert np.all(analytic_elbo < log_px)  # per point, the ELBO never exceeds log p(x)
    bounds = {}
    for k in (1, 10, 100, 1000):
        bound, elbo_k = vae.importance_weighted_bound(log_likelihood, mean, log_var, k, rng)
        bounds[k] = bound.mean()
        # the same samples' ELBO estimate agrees with the closed form
        assert elbo_k.mean() == pytest.approx(analytic_elbo.mean(), abs=0.05 + 3 / np.sqrt(k))
    gap = log_px.mean() - analytic_elbo.mean()
    assert gap > 0.5  # a clear gap for the bounds to close
    assert bounds[1] == pytest.approx(analytic_elbo.mean(), abs=0.15 * gap)  # k = 1 is the ELBO
    assert bounds[1] < bounds[10] < bounds[100] < bounds[1000] <= log_px.mean() + 0.01
    assert log_px.mean() - bounds[1000] < 0.2 * gap  # most of the gap closed


def test_the_exact_posterior_makes_every_bound_exact():
    rng = np.random.default_rng(3)
    log_likelihood, log_px, post_mean, post_log_var, elbo = _ppca(rng, orthogonal=True)
    log_var = np.tile(post_log_var, (len(post_mean), 1))
    # q = p(z|x): every importance weight p(x, z) / q(z|x) equals p(x), whatever z is drawn
    np.testing.assert_allclose(elbo(post_mean, log_var), log_px, atol=1e-9)
    bound, elbo_k = vae.importance_weighted_bound(log_likelihood, post_mean, log_var, 5, rng)
    np.testing.assert_allclose(bound, log_px, atol=1e-9)
    np.testing.assert_allclose(elbo_k, log_px, atol=1e-9)


# -------------------------------------------------- gradients of one whole training step

@pytest.mark.parametrize("kind", ["conv", "mlp"])
def test_one_training_step_gradients_against_central_differences(kind):
    rng = np.random.default_rng(4)
    model = (vae.ConvVAE(3, rng, channels=(2, 3)) if kind == "conv"
             else vae.MlpVAE(3, rng, hidden=6))
    params = model.parameters()
    for param in params:  # float64, and every parameter random (biases too)
        param.data = rng.normal(0, 0.3, size=param.data.shape)
    x = (rng.random((3, 1, 28, 28)) < 0.3).astype(np.float64)

    def loss_value() -> Tensor:
        recon, kl = vae.negative_elbo_terms(model, x, np.random.default_rng(5))  # same eps
        return recon + kl

    model.zero_grad()
    loss_value().backward()
    directions = [rng.standard_normal(p.data.shape) for p in params]
    analytic = sum(float(np.vdot(p.grad, u)) for p, u in zip(params, directions))
    start = [p.data.copy() for p in params]

    def shifted(step: float) -> float:
        for p, s, u in zip(params, start, directions):
            p.data = s + step * u
        return loss_value().item()

    eps = 1e-6
    numeric = (shifted(eps) - shifted(-eps)) / (2 * eps)
    assert analytic == pytest.approx(numeric, rel=1e-6)


def test_the_transposed_conv_bias_is_added():
    rng = np.random.default_rng(6)
    model = vae.ConvVAE(4, rng, channels=(2, 3))
    z = Tensor(rng.standard_normal((2, 4)).astype(np.float32))
    before = model.decode(z).data
    model.deconv2.bias.data = model.deconv2.bias.data + 1.5  # the post's bias did nothing
    np.testing.assert_allclose(model.decode(z).data - before, 1.5, rtol=1e-5)


def test_active_units_counts_dimensions_whose_means_vary():
    rng = np.random.default_rng(7)
    means = rng.standard_normal((5000, 4)) * np.array([1.0, 0.3, 0.05, 0.0])
    assert vae.active_units(means) == 2  # variances 1, 0.09 > 0.01; 0.0025 and 0 are not


# -------------------------------------------------- learning, resume, the NaN guard

def tiny(tmp_path, **changes) -> vae.Config:
    """A config small enough for a test: the MLP model on 3000 digits, batch 50 (the quick
    preset, the conv model on 10000 digits, takes about a minute)."""
    values = {"model": "mlp", "z_dim": 8, "hidden": 200, "epochs": 3, "n_train": 3000,
              "n_test": 500, "batch_size": 50, "frames_per_epoch": 2, "out_dir": str(tmp_path)}
    values.update(changes)
    return vae.Config(**values)


def test_learns_well_below_the_untrained_model(tmp_path):
    trained = vae.train(tiny(tmp_path))
    untrained = trained.state.history["untrained"][0]
    test = vae.evaluate(trained.model, trained.test_x, np.random.default_rng(0))
    # the best model that ignores z: each pixel on with its training frequency
    train_x, _, _, _ = vae.load_digits(tiny(tmp_path))
    p = train_x.mean(axis=0).clip(1e-4, 1 - 1e-4)
    x = trained.test_x
    pixels_only = -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(len(x), -1).sum(1).mean()
    # measured (seed 0): untrained 543, pixel frequencies 201, trained 166
    assert untrained > 500
    assert test["neg_elbo"] < 180
    assert test["neg_elbo"] < pixels_only - 15  # the code z carries real information
    # and the importance-weighted estimate of -log p(x) lies below the -ELBO of those images
    nll, neg_elbo = vae.test_nll(trained.model, trained.test_x[:50], 50,
                                 np.random.default_rng(1))
    assert nll.mean() < neg_elbo.mean()


def test_resume_equals_an_uninterrupted_run_bit_for_bit(tmp_path):
    small = {"hidden": 40, "epochs": 2}
    whole = vae.train(tiny(tmp_path / "a", **small))
    vae.train(tiny(tmp_path / "b", **{**small, "epochs": 1}))
    resumed = vae.train(tiny(tmp_path / "b", **small, resume=True))
    for (name, a), (_, b) in zip(whole.model.state_dict().items(),
                                 resumed.model.state_dict().items()):
        assert np.array_equal(a, b), name
    for key, values in whole.state.history.items():
        assert np.array_equal(np.asarray(values), np.asarray(resumed.state.history[key])), key
    assert (whole.state.rngs["rng"].bit_generator.state
            == resumed.state.rngs["rng"].bit_generator.state)


def test_a_nan_stops_training_naming_epoch_and_step_and_keeps_the_checkpoint(tmp_path,
                                                                          monkeypatch):
    config = tiny(tmp_path, hidden=40, epochs=1)
    vae.train(config)
    saved = (tmp_path / "checkpoint.npz").read_bytes()
    real = vae.negative_elbo_terms
    calls = []

    def poisoned(model, x, rng):
        recon, kl = real(model, x, rng)
        calls.append(1)
        return (recon, kl * float("nan")) if len(calls) == 3 else (recon, kl)

    monkeypatch.setattr(vae, "negative_elbo_terms", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"the kl term .* nan at epoch 2, step 3"
                                                 r".*checkpoint .* is kept"):
        vae.train(vae.Config(**{**config.__dict__, "epochs": 2, "resume": True}))
    assert (tmp_path / "checkpoint.npz").read_bytes() == saved


# -------------------------------------------------- data paths and the command line

def _idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                      *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_data_takes_mnist_idx_files_and_image_folders(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(8)
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    for prefix, n in (("train", 300), ("t10k", 100)):
        _idx(mnist / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _idx(mnist / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    with pytest.warns(RuntimeWarning, match="holds 100"):  # asked for more than there are
        train_x, train_y, test_x, _ = vae.load_digits(
            vae.Config(data=str(mnist), n_train=250, n_test=1000))
    assert train_x.shape == (250, 1, 28, 28) and test_x.shape == (100, 1, 28, 28)
    assert train_y.max() <= 9 and 0 <= test_x.min() and test_x.max() <= 1

    pictures = tmp_path / "drawings"
    pictures.mkdir()
    for i in range(12):
        grey = np.full((40, 40), 20 * i, np.uint8)
        Image.fromarray(grey).save(pictures / f"{i:02d}.png")
    train_x, train_y, test_x, _ = vae.load_digits(vae.Config(data=str(pictures), batch_size=8))
    assert train_x.shape == (10, 1, 28, 28) and test_x.shape == (2, 1, 28, 28)
    assert (train_y == -1).all()  # a folder of images has no labels
    np.testing.assert_allclose(test_x[:, 0, 0, 0], [200 / 255, 220 / 255], atol=2 / 255)


def test_a_folder_with_fewer_pictures_than_a_batch_is_refused(tmp_path):
    from PIL import Image

    for i in range(12):
        Image.fromarray(np.full((40, 40), 20 * i, np.uint8)).save(tmp_path / f"{i:02d}.png")
    with pytest.raises(DataError, match=r"12 images; the demo needs a batch \(100\) to train "
                                        r"on and one more to test"):
        vae.load_digits(vae.Config(data=str(tmp_path)))


def test_bad_data_is_a_one_line_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        vae.load_digits(vae.Config(data=str(tmp_path / "missing")))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"not an idx file")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"nor this")
    with pytest.raises(DataError, match="is not an IDX file"):
        vae.load_digits(vae.Config(data=str(tmp_path)))


def test_command_line_refuses_bad_settings(tmp_path, capsys):
    for argv in (["--model", "rnn"], ["--z-dim", "0"], ["--lr", "-1"]):
        with pytest.raises(SystemExit) as stop:
            cli.main("minimal.demos.vae", argv + ["--out-dir", str(tmp_path)])
        assert stop.value.code == 2
    with pytest.raises(SystemExit) as stop:
        cli.main("minimal.demos.vae", ["--data", str(tmp_path / "none"), "--out-dir",
                                       str(tmp_path)])
    assert stop.value.code == 1
    assert "vae: --data" in capsys.readouterr().err
