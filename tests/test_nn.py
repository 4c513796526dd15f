import io
import tracemalloc
import zipfile

import numpy as np
import pytest

from minimal import nn
from minimal.app import files
from minimal.autograd import Tensor
from minimal.gradcheck import check_grads


def save(model, path):
    files.save_arrays(path, model.state_dict())


def load(model, path):
    model.load_state_dict(files.load_arrays(path))


class TwoLayer(nn.Module):
    def __init__(self, rng):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 4, rng=rng), nn.Tanh(), nn.Linear(4, 2, rng=rng))
        self.embed = nn.Embedding(5, 3, rng=rng)
        self.register_buffer("count", np.zeros(2))

    def forward(self, ids):
        return self.body(self.embed(ids))


def test_linear_matches_formula_and_gradients():
    rng = np.random.default_rng(0)
    layer = nn.Linear(3, 2, rng=rng)
    assert layer.weight.shape == (2, 3) and layer.bias.shape == (2,)
    assert np.all(np.abs(layer.weight.data) <= 1 / np.sqrt(3)) and np.any(layer.bias.data != 0)
    x = rng.standard_normal((4, 3))
    np.testing.assert_allclose(layer(Tensor(x)).data, x @ layer.weight.data.T + layer.bias.data,
                               rtol=1e-6)
    w, b = layer.weight.data.astype(np.float64), layer.bias.data.astype(np.float64)

    def f(x, w, b):
        layer.weight, layer.bias = w, b  # plain Tensors are not registered; fine for a check
        return layer(x).tanh()
    check_grads(f, [x, w, b], order=2)
    with pytest.raises(ValueError, match=r"Linear.*\(4, 5\)"):
        nn.Linear(3, 2)(Tensor(np.zeros((4, 5))))


def test_named_parameters_state_dict_and_modes():
    model = TwoLayer(np.random.default_rng(1))
    names = [name for name, _ in model.named_parameters()]
    assert names == ["body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias",
                     "embed.weight"]
    assert list(model.state_dict()) == ["count"] + names  # the module's own buffer, then children
    model.eval()
    assert not model.body[0].training
    model.train()
    assert model.body[2].training


def test_save_load_round_trip(tmp_path):
    a, b = TwoLayer(np.random.default_rng(1)), TwoLayer(np.random.default_rng(2))
    a.count[:] = [3, 4]
    path = tmp_path / "model.npz"
    save(a, path)
    load(b, path)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(x, y, err_msg=name)
    ids = np.array([[0, 4], [2, 1]])
    np.testing.assert_array_equal(a(ids).data, b(ids).data)
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temp file left


def test_load_refuses_pickled_object_arrays(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, **{"body.0.weight": np.array([{"x": 1}], dtype=object)})
    with pytest.raises(ValueError, match="object array"):
        load(TwoLayer(np.random.default_rng(0)), path)


def test_load_rejects_wrong_names_and_shapes(tmp_path):
    model = TwoLayer(np.random.default_rng(0))
    state = model.state_dict()
    state["body.0.weight"] = np.zeros((9, 9))
    with pytest.raises(ValueError, match=r"body.0.weight.*\(9, 9\)"):
        model.load_state_dict(state)
    del state["count"]
    with pytest.raises(ValueError, match=r"missing \['count'\]"):
        model.load_state_dict(state)
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="not a readable"):
        load(model, tmp_path / "broken.npz")


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    model = TwoLayer(np.random.default_rng(0))
    save(model, path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="object array"):
        files.save_arrays(path, {"bad": np.array([object()])})

    def crash_half_way(file, **arrays):
        file.write(b"PK partial")
        raise KeyboardInterrupt
    monkeypatch.setattr(np, "savez", crash_half_way)
    with pytest.raises(KeyboardInterrupt):
        save(model, path)
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_embedding_gathers_and_accumulates_repeated_ids():
    emb = nn.Embedding(4, 2, padding_idx=0, rng=np.random.default_rng(0))
    assert np.all(emb.weight.data[0] == 0)
    ids = np.array([[1, 1, 0], [3, 1, 2]])
    out = emb(ids)
    np.testing.assert_array_equal(out.data[1, 2], emb.weight.data[2])
    out.sum().backward()
    np.testing.assert_array_equal(emb.weight.grad[:, 0], [0, 3, 1, 1])  # id 1 used 3 times
    with pytest.raises(IndexError, match=r"\[0, 4\)"):
        emb(np.array([4]))


def test_initialisers_are_seeded_and_scaled():
    shape = (400, 300)
    a = nn.xavier_uniform(shape, np.random.default_rng(3))
    np.testing.assert_array_equal(a, nn.xavier_uniform(shape, np.random.default_rng(3)))
    np.testing.assert_allclose(a.std(), np.sqrt(2 / 700), rtol=0.02)
    np.testing.assert_allclose(nn.kaiming_normal(shape, np.random.default_rng(0)).std(),
                               np.sqrt(2 / 300), rtol=0.02)
    conv = (64, 32, 5, 5)
    assert nn.fan_in_and_out(conv) == (800, 1600)
    np.testing.assert_allclose(nn.normal(conv, 0.02, np.random.default_rng(0)).std(), 0.02,
                               rtol=0.02)


def test_training_step_graph_is_freed_without_the_cycle_collector():
    """A step through every kind of layer leaves no reference cycle behind (see
    autograd._node_of_result): the graph, im2col matrices and all, is freed when the loss is."""
    import gc

    from minimal import functional as F
    rng = np.random.default_rng(0)
    conv = nn.Conv2d(3, 4, 3, 2, 1, rng=rng)
    up = nn.ConvTranspose2d(4, 3, 3, 2, 1, 1, rng=rng)
    norm, lstm, head = nn.BatchNorm2d(4), nn.LSTM(3, 5, rng=rng), nn.Linear(5, 7, rng=rng)
    x = Tensor(rng.standard_normal((2, 3, 8, 8)))

    def step():  # every intermediate is a local, gone when it returns
        image = up(F.leaky_relu(norm(conv(x)), 0.2)).tanh().sigmoid()
        h, _ = lstm(image.mean(axis=(2, 3)).reshape(1, 2, 3).exp())
        loss = F.cross_entropy(head(h.reshape(2, 5)), np.array([1, 6]))
        (loss + F.mse_loss(image, np.zeros(image.shape))).backward()

    gc.collect()
    gc.disable()
    try:
        step()
        assert gc.collect() == 0
    finally:
        gc.enable()


# ---------------------------------------------------- a refused state dict changes nothing

def _same(before, model):
    after = model.state_dict()
    return list(before) == list(after) and all(np.array_equal(before[k], after[k])
                                               for k in before)


@pytest.mark.parametrize("key, value, message", [
    ("embed.weight", np.zeros((5, 4)), r"embed.weight has shape \(5, 4\), expected \(5, 3\)"),
    ("embed.weight", np.full((5, 3), "a"), r"embed.weight holds <U1 values; expected real"),
    ("embed.weight", np.zeros((5, 3), complex), r"holds complex128 values; expected real"),
    ("embed.weight", np.array([[{}] * 3] * 5, dtype=object), r"holds object values"),
    ("embed.weight", np.full((5, 3), np.nan), r"embed.weight holds NaN or inf"),
    ("body.2.bias", np.array([0.0, np.inf]), r"body.2.bias holds NaN or inf"),
    ("count", np.zeros((1, 2)), r"count has shape \(1, 2\), expected \(2,\)"),
])
def test_a_bad_entry_late_in_the_state_dict_is_refused_before_anything_changes(key, value,
                                                                              message):
    """A user loads weights where the last entry does not fit: the error names it, and the
    earlier entries were not overwritten on the way (a later, working load starts clean)."""
    model = TwoLayer(np.random.default_rng(0))
    before = model.state_dict()
    state = {k: v + 1 for k, v in before.items()}  # every entry differs from the model's
    state[key] = value
    with pytest.raises(ValueError, match=message):
        model.load_state_dict(state)
    assert _same(before, model)


def test_a_missing_or_extra_name_is_refused_naming_it():
    model = TwoLayer(np.random.default_rng(0))
    before = model.state_dict()
    state = {k: v + 1 for k, v in before.items()}
    state["head.weight"] = np.zeros(2)
    with pytest.raises(ValueError, match=r"missing \[\], unexpected \['head.weight'\]"):
        model.load_state_dict(state)
    del state["head.weight"], state["body.0.bias"]
    with pytest.raises(ValueError, match=r"missing \['body.0.bias'\], unexpected \[\]"):
        model.load_state_dict(state)
    assert _same(before, model)


@pytest.mark.parametrize("content, message", [
    (b"step 10, loss 0.25\n", "not an .npz archive: it looks like a text file"),
    (b"", "not an .npz archive: it is empty"),
    (b"\x80\x04\x95 pickled", "looks like a Python pickle"),
    (None, "it is a single .npy array"),
])
def test_a_file_that_is_not_an_npz_is_reported_as_what_it_is(tmp_path, content, message):
    path = tmp_path / "model.npz"
    if content is None:
        with open(path, "wb") as file:
            np.save(file, np.zeros(3))  # np.save to a handle keeps the name
    else:
        path.write_bytes(content)
    model = TwoLayer(np.random.default_rng(0))
    before = model.state_dict()
    with pytest.raises(ValueError, match=message):
        load(model, path)
    assert _same(before, model)


def _npz_claiming(path, shape, compression=zipfile.ZIP_STORED):
    """An .npz whose one member's header claims `shape` (float32) but holds 16 bytes."""
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        member, {"descr": "<f4", "fortran_order": False, "shape": shape})
    member.write(bytes(16))
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("body.0.weight.npy", member.getvalue())


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_an_npz_claiming_a_huge_array_is_refused_before_numpy_allocates_it(tmp_path,
                                                                           compression):
    path = tmp_path / "model.npz"
    _npz_claiming(path, (10 ** 12,), compression)
    model = TwoLayer(np.random.default_rng(0))
    before = model.state_dict()
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"body.0.weight.npy claims an array of shape "
                                         r"\(1000000000000,\) float32"):
        load(model, path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * 2 ** 20
    assert _same(before, model)
    _npz_claiming(path, (4,), compression)  # the honest claim passes the check
    with pytest.raises(ValueError, match="missing"):
        load(model, path)  # and fails later, on the names, as any wrong checkpoint does
