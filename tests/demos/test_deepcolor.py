"""deepcolor: the hints against their definition, U-Net shapes at any size, one generator step's
gradients in float64, learning (a tiny config), exact resume, the NaN guard, and colorize."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from minimal import data
from minimal.app import training
from minimal.autograd import Tensor
from minimal.demos import deepcolor as dc
from minimal.errors import NonFiniteLossError

# The learning test's config: 32 px, narrow nets, rungs 1 and 4 only (the quick preset trains
# all four rungs at 64 px and takes about a minute; this takes a few seconds).
TINY = {"size": 32, "train_images": 128, "test_images": 8, "iterations": 300, "width": 8,
        "depth": 3, "lr": 1e-3, "decay_from": 0.5, "rungs": (1, 4), "save_every": 300}


def test_line_art_and_hints_shapes_ranges_and_whiteout():
    images = data.illustrations(3, seed=5, size=64)
    lines = np.stack([data.line_art(image) for image in images])
    assert lines.shape == (3, 64, 64) and set(np.unique(lines)) == {0.0, 1.0}
    assert 0.03 < 1 - lines.mean() < 0.5  # outlines: some ink, mostly paper

    black = np.zeros((64, 64, 3), np.float32)
    whited = dc._whiteout(black, np.random.default_rng(3))
    side = round(50 * 64 / 256)  # the original's 50 px squares at 256, scaled: 12 px
    draws = np.random.default_rng(3)
    rows, cols = draws.integers(0, 64 - side + 1, 30), draws.integers(0, 64 - side + 1, 30)
    expected = np.zeros((64, 64), bool)
    for row, col in zip(rows, cols):
        expected[row:row + side, col:col + side] = True
    assert np.array_equal(whited[..., 0] == 1.0, expected) and expected.sum() >= side * side
    # data.colour_hint's training hint is exactly that whiteout (same draws), then the blur
    image = images[0]
    hint = data.colour_hint(image, np.random.default_rng(9), train=True)
    np.testing.assert_allclose(hint, dc.blurred(dc._whiteout(image, np.random.default_rng(9))),
                               atol=1e-5)
    # the use-time hint is the blur of 0.3 * picture + 0.7 * white (the blur keeps white white)
    np.testing.assert_allclose(data.colour_hint(image, train=False),
                               0.3 * dc.blurred(image) + 0.7, atol=1e-5)
    assert hint.shape == (64, 64, 3) and 0 <= hint.min() and hint.max() <= 1


def test_rung4_training_hints_mix_the_post_s_whiteout_the_use_time_hint_and_no_hint():
    config = dc.Config(size=32, train_images=60, test_images=4, faded_hints=0.3,
                       white_hints=0.3)
    pictures = dc.prepare(config)
    index = np.arange(60)
    hints = dc.training_hints(4, pictures, index, np.random.default_rng(4), config)
    # the same draws again: which form each picture got, and its whiteout
    draws = np.random.default_rng(4)
    whiteouts = np.stack([data.colour_hint(image, draws, train=True)
                          for image in pictures["train"]])
    form = draws.random(60)
    faded, white = form < 0.3, (form >= 0.3) & (form < 0.6)
    np.testing.assert_array_equal(hints[white], 1.0)
    np.testing.assert_allclose(hints[faded], dc.use_hints(pictures, "train")[faded], atol=1e-6)
    rest = ~(faded | white)
    np.testing.assert_array_equal(hints[rest], whiteouts[rest])
    assert min(faded.sum(), white.sum(), rest.sum()) >= 10  # every form is there
    # rung 3 trains on the blurred picture; rungs 1-2 on no hint; no mix: the post's whiteout
    np.testing.assert_array_equal(dc.training_hints(3, pictures, index[:4], draws, config),
                                  pictures["train_blurs"][:4])
    assert dc.training_hints(2, pictures, index, draws, config) is None
    post = dataclasses.replace(config, faded_hints=0.0, white_hints=0.0)
    np.testing.assert_array_equal(
        dc.training_hints(4, pictures, index, np.random.default_rng(4), post),
        whiteouts)


@pytest.mark.parametrize("skips", [True, False])
def test_unet_shapes_at_several_sizes_and_odd_sizes_padded(skips):
    rng = np.random.default_rng(0)
    generator = dc.Generator(4, width=4, depth=3, skips=skips, rng=rng)
    widths = dc.level_widths(4, 3)  # 4, 8, 16
    # each decoder conv takes the level below's output, doubled by the skip when there is one
    assert [conv.in_channels for conv in generator.decoder] == (
        [16, 16, 8] if skips else [16, 8, 4])
    assert [conv.out_channels for conv in generator.decoder] == [widths[1], widths[0], 3]
    for height, width in [(8, 8), (16, 24), (40, 32)]:
        x = rng.uniform(-1, 1, (2, 4, height, width)).astype(np.float32)
        assert generator(Tensor(x)).shape == (2, 3, height, width)
    odd = rng.uniform(-1, 1, (2, 4, 13, 21)).astype(np.float32)
    out = dc.generate(generator, odd)
    assert out.shape == (2, 3, 13, 21) and np.abs(out).max() <= 1
    padded = np.pad(odd, ((0, 0), (0, 0), (0, 3), (0, 3)), constant_values=1.0)  # to 16 x 24
    np.testing.assert_allclose(out, dc.generate(generator, padded)[:, :, :13, :21], atol=1e-6)
    assert generator.training  # generate() put it back in training mode
    # evaluation uses the running statistics: a picture colours the same alone or in a batch
    # (the original normalised a test batch of one picture by its own statistics)
    np.testing.assert_allclose(dc.generate(generator, odd[1:]), out[1:], atol=1e-6)


def test_targets_share_the_tanh_range():
    pictures = np.random.default_rng(0).uniform(0, 1, (2, 5, 7, 3)).astype(np.float32)
    targets = dc.to_net(pictures)  # what the tanh output is compared with: [-1, 1], not [0, 1]
    assert targets.shape == (2, 3, 5, 7) and targets.min() < -0.9 and targets.max() > 0.9
    np.testing.assert_allclose(dc.from_net(targets), pictures, atol=1e-6)


def test_generator_step_gradients_against_central_differences_float64():
    rng = np.random.default_rng(1)
    generator = dc.Generator(4, width=2, depth=2, skips=True, rng=rng)
    discriminator = dc.Discriminator(7, width=2, size=8, rng=rng)
    for module in (generator, discriminator):
        for param in module.parameters():  # randomised, biases and batch-norm affine included
            param.data = rng.normal(0, 0.3, param.shape)
    x = Tensor(rng.uniform(-1, 1, (3, 4, 8, 8)))
    y = Tensor(rng.uniform(-1, 1, (3, 3, 8, 8)))
    params = generator.parameters()

    def loss() -> Tensor:
        return dc.generator_loss(discriminator, x, y, generator(x), l1_weight=100.0)[0]

    generator.zero_grad()
    loss().backward()
    analytic_grads = [p.grad.copy() for p in params]
    # the batch norm's scale and offset get a gradient (the original never trained them)
    assert all(np.abs(norm.weight.grad).sum() > 0 for norm in generator.decoder_norm)
    directions = [rng.standard_normal(p.shape) for p in params]
    analytic = sum(float(np.vdot(g, u)) for g, u in zip(analytic_grads, directions))
    base = [p.data.copy() for p in params]

    def at(step: float) -> float:
        for p, b, u in zip(params, base, directions):
            p.data = b + step * u
        return float(loss().data)

    numeric = (at(1e-6) - at(-1e-6)) / 2e-6
    assert abs(analytic - numeric) <= 1e-5 * abs(numeric) + 1e-7, (analytic, numeric)


def test_rung4_with_hints_beats_the_plain_net_which_is_greyer_and_holds_without(tmp_path):
    config = dc.Config(**TINY, out_dir=str(tmp_path))
    rng = np.random.default_rng(config.seed)
    pictures = dc.prepare(config)
    modules, optimizers = dc.build(config, rng)
    state = training.TrainingState("deepcolor", config, modules, optimizers, rng)
    untrained, _ = dc.evaluate(config, modules, pictures)
    dc.train(config, pictures, rng, state, modules, optimizers)
    metrics, _ = dc.evaluate(config, modules, pictures)
    # measured (seed 0): L1 rung 4 with hints 0.120, rung 1 0.138, untrained rung 4 0.185,
    # rung 4 without a hint 0.137; chroma rung 1 over the originals' 0.85 (seed 1: 0.134,
    # 0.147, 0.196, 0.140, 0.85; seed 2: 0.131, 0.133, 0.189, 0.134, 0.72)
    assert metrics["l1_rung4_hint"] < 0.9 * metrics["l1_rung1"]
    assert metrics["l1_rung4_hint"] < 0.7 * untrained["l1_rung4_hint"]
    assert metrics["l1_rung4"] <= metrics["l1_rung1"] + 0.02  # trained on no hint too
    assert metrics["chroma_rung1"] < 0.93 * metrics["chroma_originals"]


SMALL = {"size": 32, "train_images": 16, "test_images": 4, "iterations": 4, "width": 4,
         "depth": 2, "rungs": (1, 4), "save_every": 2, "decay_from": 0.5}


def _train(config, stop_after=None):
    rng = np.random.default_rng(config.seed)
    pictures = dc.prepare(config)
    modules, optimizers = dc.build(config, rng)
    state = training.TrainingState("deepcolor", config, modules, optimizers, rng)
    if config.resume:
        state.resume()
    dc.train(config, pictures, rng, state, modules, optimizers, stop_after=stop_after)
    return modules, state


def test_step_size_is_constant_then_falls_linearly_to_zero(tmp_path):
    config = dc.Config(iterations=10, decay_from=0.6, lr=1e-3)
    sizes = [dc.step_size(step, config) for step in range(10)]
    np.testing.assert_allclose(sizes, 1e-3 * np.array([1] * 6 + [4 / 4, 3 / 4, 2 / 4, 1 / 4]))
    post = dc.Config(iterations=10, decay_from=1.0)  # the post's constant step
    assert {dc.step_size(step, post) for step in range(10)} == {2e-4}
    _, state = _train(dc.Config(**SMALL, out_dir=str(tmp_path)))  # 4 steps, decay from 2
    # each rung's optimisers took its last step (step 3 of 0-3) at (4 - 3) / (4 - 2) of lr
    for name in ("rung1", "rung4", "disc4"):
        assert state.optimizers[name].lr == pytest.approx(2e-4 / 2)


def test_resume_is_bit_for_bit(tmp_path):
    whole, whole_state = _train(dc.Config(**SMALL, out_dir=str(tmp_path / "a")))
    _train(dc.Config(**SMALL, out_dir=str(tmp_path / "b")), stop_after=7)  # mid rung 4
    resumed, resumed_state = _train(dc.Config(**SMALL, out_dir=str(tmp_path / "b"),
                                              resume=True))
    for name in whole:
        for key, value in whole[name].state_dict().items():
            assert np.array_equal(value, resumed[name].state_dict()[key]), (name, key)
    assert resumed_state.history == whole_state.history


def test_nan_stops_naming_the_rung_and_step(tmp_path):
    config = dc.Config(**SMALL, out_dir=str(tmp_path))
    rng = np.random.default_rng(0)
    pictures = dc.prepare(config)
    pictures["train"] = pictures["train"].copy()
    pictures["train"][:, 0, 0] = np.nan  # a damaged picture
    modules, optimizers = dc.build(config, rng)
    state = training.TrainingState("deepcolor", config, modules, optimizers, rng)
    with pytest.raises(NonFiniteLossError, match=r"l2 term .* rung 1, step 1;"):
        dc.train(config, pictures, rng, state, modules, optimizers)
    assert not (tmp_path / "checkpoint.npz").exists()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained")
    config = dc.Config(**{**SMALL, "rungs": (4,), "iterations": 2}, out_dir=str(folder))
    _train(config)
    return folder / "checkpoint.npz"


def _colorize(args, capsys):
    try:
        dc.main(args)
    except SystemExit as stop:
        return stop.code, capsys.readouterr().err
    return 0, capsys.readouterr().err


def test_colorize_keeps_the_size_of_odd_grey_and_rgba_drawings(checkpoint, tmp_path, capsys):
    grey = np.full((37, 53), 255, np.uint8)
    grey[10:12, 5:40] = 0  # a stroke
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    rgba = np.zeros((41, 29, 4), np.uint8)  # fully transparent black: blank paper
    rgba[20:22, 3:25] = (0, 0, 0, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "line.png")
    blank = np.full((41, 29), 255, np.uint8)
    blank[20:22, 3:25] = 0
    Image.fromarray(blank, "L").save(tmp_path / "same.png")
    Image.fromarray(np.full((9, 14, 3), (200, 40, 40), np.uint8)).save(tmp_path / "hint.png")
    runs = [("grey.png", ["--hint", str(tmp_path / "hint.png")]), ("line.png", []),
            ("same.png", [])]
    for name, extra in runs:
        code, err = _colorize(["--colorize", str(tmp_path / name), "--out",
                               str(tmp_path / ("out_" + name)), "--checkpoint", str(checkpoint),
                               *extra], capsys)
        assert code == 0, err
    for name, (height, width) in [("grey.png", (37, 53)), ("line.png", (41, 29))]:
        with Image.open(tmp_path / ("out_" + name)) as out:
            assert out.size == (width, height) and out.mode == "RGB"
    # transparency is white paper: the RGBA drawing colours exactly as the same lines on white
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out_line.png")),
                          np.asarray(Image.open(tmp_path / "out_same.png")))


def test_colorize_bad_files_fail_clearly_and_write_nothing(checkpoint, tmp_path, capsys,
                                                          bomb_png):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not a picture\n")
    bomb_png(tmp_path / "bomb.png")
    cases = {"missing.png": "no such file", "empty.png": "empty", "text.png": "not an image",
             "bomb.png": "decompression bomb"}
    out = tmp_path / "out.png"
    for name, message in cases.items():
        code, err = _colorize(["--colorize", str(tmp_path / name), "--out", str(out),
                               "--checkpoint", str(checkpoint)], capsys)
        assert code == 1 and message in err and err.count("\n") == 1, (name, err)
        assert not out.exists()
    Image.new("L", (20, 20), 255).save(tmp_path / "ok.png")
    code, err = _colorize(["--colorize", str(tmp_path / "ok.png"), "--out", str(out),
                           "--checkpoint", str(tmp_path / "none.npz")], capsys)
    assert code == 1 and "python -m minimal.demos.deepcolor --quick" in err
    assert not out.exists()
    # a damaged checkpoint (empty, cut short) or another demo's: one line, no traceback
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "cut.npz").write_bytes(checkpoint.read_bytes()[:5000])
    other = tmp_path / "other.npz"
    arrays = dict(np.load(checkpoint, allow_pickle=False))
    np.savez(other, **{**arrays, "demo": np.array("gan")})
    for name, message in (("empty.npz", "it is empty"), ("cut.npz", "damaged"),
                          ("other.npz", "is a gan checkpoint, not a deepcolor one")):
        code, err = _colorize(["--colorize", str(tmp_path / "ok.png"), "--out", str(out),
                               "--checkpoint", str(tmp_path / name)], capsys)
        assert code == 1 and message in err and err.count("\n") == 1, (name, err)
        assert not out.exists()


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="size"):
        dc.Config(size=100)
    with pytest.raises(ValueError, match="--out"):
        dc.Config(colorize="x.png")
    with pytest.raises(ValueError, match=r"--faded-hints, --white-hints.*at most 1"):
        dc.Config(faded_hints=0.6, white_hints=0.5)
    with pytest.raises(ValueError, match="decay_from"):
        dc.Config(decay_from=1.5)
    assert dataclasses.asdict(dc.Config())["rungs"] == (1, 2, 3, 4)
