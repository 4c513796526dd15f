"""Deconvnet demo: unpooling, the adjoint, receptive fields, the three ReLU rules by hand and
against autograd, the identity check, learning, resume and the NaN guard."""

import numpy as np
import pytest

from minimal import functional as F
from minimal.autograd import Tensor, grad, no_grad
from minimal.demos import deconvnet as dc
from minimal.errors import ConfigError, NonFiniteLossError

# held-out accuracy of the tiny learning run below: measured 0.794 (seed 0, 1 thread; the
# untrained net 0.056); the threshold leaves room for other BLAS builds
THRESHOLD = 0.6


def random_net(rng, channels=2, side=12, widths=(3, 4)):
    """A small ConvNet whose every parameter, biases included, is random."""
    model = dc.ConvNet(channels, side, rng, widths=widths, hidden=5)
    for p in model.parameters():
        p.data[...] = rng.standard_normal(p.shape).astype(np.float32) * 0.5
    return model


def test_unpooling_with_switches_puts_each_value_back_at_its_max():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 8)).astype(np.float32)
    pooled, switches = F.max_pool2d(Tensor(x), 2, return_indices=True)
    values = rng.standard_normal(pooled.shape).astype(np.float32)  # any signal, not the maxima
    back = dc.unpool(Tensor(values), switches, (6, 8), "switches").data
    filled = dc.unpool(Tensor(values), switches, (6, 8), "fill").data
    for n, c, i, j in np.ndindex(*pooled.shape):
        window = x[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
        r, s = np.unravel_index(window.argmax(), (2, 2))
        expected = np.zeros((2, 2), np.float32)
        expected[r, s] = values[n, c, i, j]
        np.testing.assert_array_equal(back[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2], expected)
        np.testing.assert_array_equal(filled[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2],
                                      np.full((2, 2), values[n, c, i, j]))


@pytest.mark.parametrize("stride,padding", [(1, 2), (2, 1), (1, 0)])
def test_transposed_conv_is_the_adjoint_of_conv(stride, padding):
    rng = np.random.default_rng(stride + 3 * padding)
    x = rng.standard_normal((2, 3, 9, 10))
    weight = rng.standard_normal((4, 3, 5, 5))
    out = F.conv2d(Tensor(x), Tensor(weight), stride=stride, padding=padding).data
    y = rng.standard_normal(out.shape)
    lost = tuple((size + 2 * padding - 5) % stride for size in (9, 10))  # rows the stride skipped
    back = F.conv_transpose2d(Tensor(y), Tensor(weight), stride=stride, padding=padding,
                              output_padding=lost).data
    assert back.shape == x.shape
    # <conv(x), y> = <x, conv_T(y)>
    np.testing.assert_allclose(np.sum(out * y), np.sum(x * back), rtol=1e-12)


@pytest.mark.parametrize("rule", dc.RULES)
@pytest.mark.parametrize("how", dc.UNPOOLS)
def test_projection_of_one_activation_lands_inside_its_receptive_field(rule, how):
    rng = np.random.default_rng(1)
    side = 20
    model = random_net(rng, side=side)
    image = rng.random((1, 2, side, side)).astype(np.float32)
    trace = model.trace(Tensor(image))
    # layer 1 pooled (i, j): pool rows 2i..2i+1, then a 5x5 conv padded by 2 -> rows 2i-2..2i+3;
    # layer 2 pooled (i, j): layer-1 pooled rows 2i-2..2i+3 -> image rows 4i-6..4i+9
    for layer, (i, j), reach in ((1, (4, 6), (2, 3)), (2, (2, 3), (6, 9))):
        pooled = trace.pooled[layer - 1].data
        seed = np.zeros_like(pooled)
        seed[0, 1, i, j] = 1.0
        picture = dc.project_down(model, trace, seed, layer, rule, how)[0]
        stride = 2 ** layer
        inside = np.zeros((side, side), bool)
        inside[max(0, stride * i - reach[0]):stride * i + reach[1] + 1,
               max(0, stride * j - reach[0]):stride * j + reach[1] + 1] = True
        touched = np.abs(picture).sum(axis=0) > 0
        assert not touched[~inside].any(), (layer, rule, how)
        if rule == "deconvnet":  # (the ReLU masks of the others may block this one path)
            assert touched[inside].any(), (layer, rule, how)


@pytest.mark.parametrize("layer", [1, 2])
def test_the_gradient_rule_is_the_gradient(layer):
    """Down with switches and the chain rule's ReLU mask = autograd's d<seed, a_L>/d pixels."""
    rng = np.random.default_rng(2)
    model = random_net(rng)
    image = rng.random((3, 2, 12, 12)).astype(np.float32)
    x = Tensor(image, requires_grad=True)
    trace = model.trace(x)
    seed = rng.standard_normal(trace.pooled[layer - 1].shape).astype(np.float32)
    (expected,) = grad((trace.pooled[layer - 1] * Tensor(seed)).sum(), [x])
    got = dc.project_down(model, trace, seed, layer, "gradient", "switches")
    np.testing.assert_allclose(got, expected.data, rtol=1e-5, atol=1e-6)
    # the deconvnet differs from it (it rectifies the signal instead), as it should
    assert not np.allclose(dc.project_down(model, trace, seed, layer), expected.data, atol=1e-3)


def test_relu_rules_by_hand():
    signal = Tensor(np.array([-2.0, -1.0, 1.0, 3.0]))
    forward_input = Tensor(np.array([1.0, -1.0, 2.0, -3.0]))
    np.testing.assert_array_equal(dc.relu_down(signal, forward_input, "deconvnet").data,
                                  [0, 0, 1, 3])  # negative signal zeroed
    np.testing.assert_array_equal(dc.relu_down(signal, forward_input, "gradient").data,
                                  [-2, 0, 1, 0])  # negative forward input zeroed
    np.testing.assert_array_equal(dc.relu_down(signal, forward_input, "guided").data,
                                  [0, 0, 1, 0])  # both


def test_guided_backprop_on_a_tiny_net_by_hand():
    """One channel, a 5x5 kernel whose only non-zero is its centre (1), bias -2: the conv is
    x - 2, so every number below can be followed by hand."""
    model = dc.ConvNet(1, 4, np.random.default_rng(0), widths=(1, 1), hidden=1, centre=0.0)
    model.conv1.weight.data[...] = 0
    model.conv1.weight.data[0, 0, 2, 2] = 1
    model.conv1.bias.data[...] = -2
    x = np.array([[1, 2, 0, 0],
                  [0, 0, 0, 3],
                  [5, 0, 1, 1],
                  [0, 4, 1, 1]], np.float32)
    # pre-ReLU x - 2: windows TL [[-1 0] [-2 -2]] (all <= 0: the switch takes the first, -1),
    # TR max at (1, 3) = 1, BL max at (2, 0) = 3, BR all -1 (switch at (2, 2))
    trace = model.trace(Tensor(x[None, None]))
    seed = np.array([[[[5, 6], [-4, 7]]]], np.float32)  # a signal with a negative entry

    def down(rule, how="switches"):
        return dc.project_down(model, trace, seed, 1, rule, how)[0, 0]

    deconvnet, gradient, guided = (np.zeros((4, 4), np.float32) for _ in range(3))
    deconvnet[0, 0], deconvnet[1, 3], deconvnet[2, 2] = 5, 6, 7  # -4 rectified away
    gradient[1, 3], gradient[2, 0] = 6, -4  # only where x - 2 > 0, negative signal kept
    guided[1, 3] = 6  # positive signal and positive input: one pixel
    np.testing.assert_array_equal(down("deconvnet"), deconvnet)
    np.testing.assert_array_equal(down("gradient"), gradient)
    np.testing.assert_array_equal(down("guided"), guided)
    filled = np.kron(np.array([[5, 6], [0, 7]], np.float32), np.ones((2, 2), np.float32))
    np.testing.assert_array_equal(down("deconvnet", "fill"), filled)


def test_identity_check_switches_exact_fill_off_by_root_three():
    rng = np.random.default_rng(3)
    errors = dc.identity_check(rng.random((4, 3, 10, 12)).astype(np.float32))
    assert errors["switches"] <= 1e-7
    np.testing.assert_allclose(errors["fill"], np.sqrt(3), rtol=1e-5)  # 3 wrong copies each


def test_top_image_is_the_argmax():
    trace = dc.Trace(pooled=[Tensor(np.zeros((3, 2, 2, 2), np.float32))])
    trace.pooled[0].data[1, 0, 1, 1] = 5  # feature 0 fires most in image 1
    trace.pooled[0].data[2, 1, 0, 0] = 2  # feature 1 in image 2
    trace.pooled[0].data[0, 1, 0, 0] = -9  # (the post's argmin would pick image 0)
    np.testing.assert_array_equal(dc.top_images(trace, 1), [1, 2])


def test_config_refuses_bad_values():
    with pytest.raises(ConfigError, match="feature"):
        dc.Config(layer=1, feature=32)
    dc.Config(layer=2, feature=63)
    with pytest.raises(ConfigError, match="dataset"):
        dc.Config(dataset="imagenet")
    with pytest.raises(ConfigError, match="lr"):
        dc.Config(lr=0.0)


def small_config(tmp_path, **overrides):
    values = dict(dataset="digits", train_size=60, test_size=20, epochs=2, batch_size=20,
                  hidden=16, out_dir=str(tmp_path))
    values.update(overrides)
    return dc.Config(**values)


class Stop(Exception):
    pass


def test_resume_equals_an_uninterrupted_run_bit_for_bit(tmp_path, monkeypatch):
    """The run is stopped after its first checkpoint (the learning rate's schedule spans the
    whole run, so a 1-epoch run would be another run) and resumed with the same settings."""
    whole = small_config(tmp_path / "a")
    model_a, state_a, _ = dc.train(whole, *dc.load_data(whole))
    save = dc.training.TrainingState.save

    def save_then_stop(state):
        save(state)
        raise Stop

    monkeypatch.setattr(dc.training.TrainingState, "save", save_then_stop)
    first = small_config(tmp_path / "b")
    with pytest.raises(Stop):
        dc.train(first, *dc.load_data(first))
    monkeypatch.setattr(dc.training.TrainingState, "save", save)
    rest = small_config(tmp_path / "b", resume=True)
    model_b, state_b, _ = dc.train(rest, *dc.load_data(rest))
    for (name, a), (_, b) in zip(model_a.state_dict().items(), model_b.state_dict().items()):
        assert np.array_equal(a, b), name
    assert state_a.history == state_b.history


def test_a_nan_stops_training_naming_the_step(tmp_path):
    config = small_config(tmp_path, epochs=1)
    train_x, train_y, test_x, test_y = dc.load_data(config)
    train_x[:] = np.nan
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 1"):
        dc.train(config, train_x, train_y, test_x, test_y)


def test_the_convnet_learns_digits_with_a_fixed_seed(tmp_path):
    """A tiny run (500 synthetic digits, 2 epochs; the quick preset is too long for a test):
    held-out accuracy 0.79 measured, the untrained net's 0.06."""
    config = dc.Config(dataset="digits", train_size=500, test_size=500, epochs=2,
                       out_dir=str(tmp_path))
    _, state, untrained = dc.train(config, *dc.load_data(config))
    assert untrained < 0.2
    assert state.history["held_out_accuracy"][-1] >= THRESHOLD


def test_at_layer_one_the_three_rules_agree_and_part_from_layer_two():
    """Seeded with a feature's own (non-negative) map, the signal reaching layer 1's ReLU is
    positive exactly where that ReLU's input was: rectifying it, masking by the input, or both
    give one picture. At layer 2 the signal comes through transposed filters, with both signs."""
    rng = np.random.default_rng(4)
    model = random_net(rng)
    images = rng.random((3, 2, 12, 12)).astype(np.float32)
    layer1 = [dc.project(model, images, 1, 2, rule) for rule in dc.RULES]
    np.testing.assert_array_equal(layer1[0], layer1[1])
    np.testing.assert_array_equal(layer1[0], layer1[2])
    layer2 = [dc.project(model, images, 2, 1, rule) for rule in dc.RULES]
    assert np.abs(layer2[0]).max() > 0
    assert not np.allclose(layer2[0], layer2[1]) and not np.allclose(layer2[1], layer2[2])


def test_object_ratio_on_hand_made_projections():
    """All of a projection on the mask gives 1 / (the mask's share of the image); one spread
    evenly gives 1; all of it off the mask gives 0. Signs and channels count by magnitude."""
    masks = np.zeros((3, 8, 8), np.float32)
    masks[:, 2:6, 2:4] = 1  # 8 of 64 pixels: a share of 1/8
    projections = np.zeros((3, 3, 8, 8), np.float32)
    projections[0, 1, 2:6, 2:4] = np.array([1.0, -2.0])  # on the object, both signs
    projections[1] = 0.5  # uniform
    projections[2, 0, 0, :] = -3.0  # off the object
    np.testing.assert_allclose(dc.object_ratio(projections, masks), [8.0, 1.0, 0.0], rtol=1e-6)
    # a soft mask: half coverage on the object's pixels counts half
    np.testing.assert_allclose(dc.object_ratio(projections[:1], 0.5 * masks[:1]), [8.0],
                               rtol=1e-6)


def test_learning_rate_rises_over_the_warmup_then_falls_by_half_a_cosine():
    config = dc.Config(lr=1e-3, warmup=0.1)
    rates = np.array([dc.learning_rate(config, step, 100) for step in range(100)])
    np.testing.assert_allclose(rates[:10], 1e-4 * np.arange(1, 11))  # linear up to lr
    np.testing.assert_allclose(rates[10], 1e-3)
    np.testing.assert_allclose(rates[55], 5e-4)  # half way down at the middle of the rest
    assert np.all(np.diff(rates[10:]) < 0) and rates[-1] < 1e-6
    flat = [dc.learning_rate(dc.Config(lr=1e-3, warmup=0.0), step, 4) for step in range(4)]
    np.testing.assert_allclose(flat, 1e-3 * 0.5 * (1 + np.cos(np.pi * np.arange(4) / 4)))


def test_relu_layers_start_he_normal_with_zero_biases_the_first_smaller():
    model = dc.ConvNet(3, 32, np.random.default_rng(0))
    for layer, fan_in, scale in ((model.conv1, 3 * 25, dc.FIRST_FILTERS_START),
                                 (model.conv2, 32 * 25, 1), (model.fc1, 64 * 64, 1)):
        std = scale * np.sqrt(2 / fan_in)
        np.testing.assert_allclose(layer.weight.data.std(), std, rtol=0.05)
        assert abs(layer.weight.data.mean()) < 0.1 * std
        assert not layer.bias.data.any()


def test_the_feature_shown_is_the_one_whose_projections_fall_on_the_object():
    """A layer-1 net whose feature 1 copies the red channel, feature 0 the green: with the
    objects red on a green background, feature 1's projections lie on the objects."""
    rng = np.random.default_rng(7)
    model = dc.ConvNet(3, 12, rng, widths=(2, 2), hidden=4, centre=0.0)
    model.conv1.weight.data[...] = 0
    model.conv1.weight.data[0, 1, dc.PAD, dc.PAD] = 1  # green
    model.conv1.weight.data[1, 0, dc.PAD, dc.PAD] = 1  # red
    images = np.zeros((6, 3, 12, 12), np.float32)
    masks = np.zeros((6, 12, 12), np.float32)
    for n in range(6):
        y, x = rng.integers(0, 8, 2)
        masks[n, y:y + 4, x:x + 4] = 1
    images[:, 0] = masks * rng.uniform(0.5, 1, (6, 1, 1))
    images[:, 1] = (1 - masks) * rng.uniform(0.5, 1, (6, 1, 1))
    with no_grad():
        trace = model.trace(Tensor(images))
    assert dc.most_on_object_feature(model, trace, images, masks, 1, 3) == 1
    images[:, [0, 1]] = images[:, [1, 0]]  # red background, green objects
    with no_grad():
        trace = model.trace(Tensor(images))
    assert dc.most_on_object_feature(model, trace, images, masks, 1, 3) == 0


def test_standardised_input_keeps_the_gradient_rule_the_gradient():
    """With per-channel centre and scale the projection is taken back to pixel units: the
    gradient rule still equals autograd's gradient with respect to the pixels."""
    rng = np.random.default_rng(6)
    model = dc.ConvNet(2, 12, rng, widths=(3, 4), hidden=5, centre=[0.3, 0.6],
                       scale=[0.2, 0.5])
    image = rng.random((2, 2, 12, 12)).astype(np.float32)
    x = Tensor(image, requires_grad=True)
    trace = model.trace(x)
    seed = rng.standard_normal(trace.pooled[1].shape).astype(np.float32)
    (expected,) = grad((trace.pooled[1] * Tensor(seed)).sum(), [x])
    got = dc.project_down(model, trace, seed, 2, "gradient", "switches")
    np.testing.assert_allclose(got, expected.data, rtol=1e-4, atol=1e-6)
