"""minimal.app.metrics: the Frechet distance against closed forms on Gaussians (diagonal and
non-commuting covariances), zero for identical sets and symmetric; fitted to samples it
approaches the true distance; the classifier's cache is reused exactly when everything its key
names is the same, and trained afresh when any of it changes or the file is damaged."""

import json

import numpy as np
import pytest
import scipy.linalg

from minimal.app import metrics


def test_frechet_distance_of_gaussians_with_diagonal_covariances_is_the_closed_form():
    # diagonal covariances commute: |m_a - m_b|^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mean_a, mean_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = 1 + 4 + (1 - 3) ** 2 + (2 - 1) ** 2
    assert metrics.frechet_distance(mean_a, np.diag(a), mean_b, np.diag(b)) == \
        pytest.approx(expected)
    # equal covariances: only the means count
    cov = np.array([[2.0, 0.5], [0.5, 1.0]])
    assert metrics.frechet_distance(np.zeros(2), cov, np.array([3.0, 4.0]), cov) == \
        pytest.approx(25.0)


def test_frechet_distance_with_non_commuting_covariances_matches_the_textbook_form():
    rng = np.random.default_rng(2)
    root_a, root_b = rng.standard_normal((2, 4, 4))
    cov_a, cov_b = root_a @ root_a.T + 0.1 * np.eye(4), root_b @ root_b.T
    assert not np.allclose(cov_a @ cov_b, cov_b @ cov_a)
    mean_a, mean_b = rng.standard_normal((2, 4))
    direct = (np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b)
              - 2 * np.trace(scipy.linalg.sqrtm(cov_a @ cov_b)).real)
    forward = metrics.frechet_distance(mean_a, cov_a, mean_b, cov_b)
    assert forward == pytest.approx(direct, rel=1e-9)
    assert metrics.frechet_distance(mean_b, cov_b, mean_a, cov_a) == pytest.approx(forward,
                                                                                   rel=1e-9)


def test_feature_distance_is_zero_for_identical_sets_symmetric_and_fits_samples():
    rng = np.random.default_rng(3)
    features = rng.standard_normal((300, 5)) @ rng.standard_normal((5, 5))
    assert abs(metrics.feature_frechet_distance(features, features)) < 1e-9
    other = rng.standard_normal((200, 5)) + 0.5
    assert metrics.feature_frechet_distance(features, other) == pytest.approx(
        metrics.feature_frechet_distance(other, features), rel=1e-9)
    # fitted to many samples of two known Gaussians, it approaches their distance
    root_a, root_b = rng.standard_normal((2, 4, 4))
    cov_a, cov_b = root_a @ root_a.T + 0.1 * np.eye(4), root_b @ root_b.T + 0.1 * np.eye(4)
    mean_a, mean_b = rng.standard_normal((2, 4))
    true = metrics.frechet_distance(mean_a, cov_a, mean_b, cov_b)
    samples_a = mean_a + rng.standard_normal((40000, 4)) @ np.linalg.cholesky(cov_a).T
    samples_b = mean_b + rng.standard_normal((40000, 4)) @ np.linalg.cholesky(cov_b).T
    assert metrics.feature_frechet_distance(samples_a, samples_b) == pytest.approx(true,
                                                                                   rel=0.03)


def blobs(count, seed=0):
    """8x8 grey images in [-1, 1]: a bright square at one of 4 places, the place the label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, count)
    images = np.full((count, 1, 8, 8), -0.8, np.float32)
    for index, label in enumerate(labels):
        top, left = 4 * (label // 2), 4 * (label % 2)
        images[index, 0, top:top + 4, left:left + 4] = 0.8
    return images + 0.1 * rng.standard_normal(images.shape).astype(np.float32), labels


def ramps(count, seed=0):
    """8x8 grey images that are darker at the top than at the bottom: a quarter turn shows."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-1, 1, 8, dtype=np.float32)[:, None] * np.ones(8, np.float32)
    images = ramp * rng.uniform(0.5, 1, (count, 1, 1, 1)) + 0.1 * rng.standard_normal(
        (count, 1, 8, 8))
    return images.astype(np.float32)


def test_the_classifier_learns_its_task_with_labels_and_with_quarter_turns():
    images, labels = blobs(1280)
    net, accuracy = metrics.train_feature_net(images, labels, seed=0, epochs=3)
    # measured 0.99 (seeds 1, 2: 1.0); chance 0.25
    assert accuracy > 0.9 and not net.training
    assert metrics.features_of(net, images[:7]).shape == (7, net.features_dim)
    rotated, turns = metrics.rotation_task(images[:4], np.random.default_rng(0))
    for image, turned, k in zip(images[:4], rotated, turns):
        np.testing.assert_array_equal(turned, np.rot90(image, k, axes=(1, 2)))
    net, accuracy = metrics.train_feature_net(ramps(640), None, seed=0, epochs=4)
    assert net.out.weight.shape[0] == 4 and accuracy > 0.9  # measured 1.0 (seeds 0-2)


def test_the_floor_compares_as_many_training_images_as_held_out_ones():
    images, labels = blobs(400)
    net, _ = metrics.train_feature_net(images, labels, seed=0, epochs=1)
    held_out = metrics.features_of(net, blobs(50, seed=1)[0])
    floor = metrics.frechet_floor(net, images, held_out, np.random.default_rng(5))
    chosen = np.random.default_rng(5).choice(len(images), 50, replace=False)
    assert floor == metrics.feature_frechet_distance(metrics.features_of(net, images[chosen]),
                                                     held_out)
    shifted = metrics.feature_frechet_distance(metrics.features_of(net, -images[:50]), held_out)
    assert 0 < floor < 0.2 * shifted  # the same data scores far below other data


SOURCE = {"dataset": "blobs", "data": ""}


@pytest.fixture
def trainings(monkeypatch):
    """A list that grows by one each time a classifier is trained (not loaded)."""
    count = []
    adam = metrics.optim.Adam
    monkeypatch.setattr(metrics.optim, "Adam", lambda *a, **k: count.append(1) or adam(*a, **k))
    return count


def test_the_cache_is_reused_for_the_same_key_and_stores_what_it_names(tmp_path, trainings):
    images, labels = blobs(200)
    path = tmp_path / "feature_net.npz"
    first, accuracy = metrics.train_feature_net(images, labels, 0, 1, path, SOURCE)
    again, accuracy_again = metrics.train_feature_net(images, labels, 0, 1, path, SOURCE)
    assert len(trainings) == 1 and accuracy_again == accuracy
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        np.testing.assert_array_equal(a, b)  # batch-norm running statistics too
    key = json.loads(str(np.load(path)["key"]))
    assert key == {"dataset": "blobs", "data": "", "seed": 0, "n": 200, "epochs": 1,
                   "images": key["images"], "blas_threads": metrics.threads.THREADS}
    assert str(np.load(path)["key"]) == metrics.feature_net_key(images, 0, 1, SOURCE)


def test_any_change_the_key_names_trains_afresh(tmp_path, trainings, monkeypatch):
    images, labels = blobs(200)
    path = tmp_path / "feature_net.npz"
    metrics.train_feature_net(images, labels, 0, 1, path, SOURCE)
    changed = images.copy()
    changed[0, 0, 0, 0] += 1.0  # image 0 is in the hashed sample (every 200 // 500 = 1st)
    variants = [dict(seed=1), dict(epochs=2), dict(source={**SOURCE, "data": "other"}),
                dict(train=images[:199], labels=labels[:199]), dict(train=changed)]
    for variant in variants:
        arguments = {"train": images, "labels": labels, "seed": 0, "epochs": 1,
                     "cache_path": path, "source": SOURCE, **variant}
        before = len(trainings)
        metrics.train_feature_net(**arguments)
        metrics.train_feature_net(**arguments)
        assert len(trainings) == before + 1, variant  # trained once, then loaded
    # float32 sums round differently with another BLAS thread count
    monkeypatch.setattr(metrics.threads, "THREADS", metrics.threads.THREADS + 1)
    before = len(trainings)
    metrics.train_feature_net(images, labels, 0, 1, path, SOURCE)
    assert len(trainings) == before + 1


def test_a_damaged_cache_is_trained_afresh_and_overwritten(tmp_path, trainings):
    images, labels = blobs(200)
    path = tmp_path / "feature_net.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    net, _ = metrics.train_feature_net(images, labels, 0, 1, path, SOURCE)
    assert len(trainings) == 1
    metrics.train_feature_net(images, labels, 0, 1, path, SOURCE)
    assert len(trainings) == 1  # the rewritten file loads
    without_cache, _ = metrics.train_feature_net(images, labels, 0, 1)
    for a, b in zip(net.state_dict().values(), without_cache.state_dict().values()):
        np.testing.assert_array_equal(a, b)  # a cache changes nothing but the time
