"""deepcolor: colouring line art with a conditional GAN and colour hints.

Follows the deepcolor post (line art in, a coloured picture out), which builds on pix2pix
(Isola et al., 2017): a U-Net generator sees the line art (and, later, a blurred colour hint)
and is trained against a discriminator that sees the same inputs next to a real or a generated
picture, plus 100 x the L1 distance to the real colours. The post climbs a ladder, and so does
this demo; each rung is trained on the same pictures with the same seed, and all four are shown
side by side on the same held-out pictures. That ladder (four models, the hints between them,
five figures) and the two ways to use its last rung on your own drawings make this one of the
longer demos; the file and web plumbing of those two uses is in minimal/app/colorize.py.

    rung 1  a plain encoder-decoder conv net (no skips), line art in, L2 loss only
            (the post: the colours come out greyish, the average of every plausible colouring)
    rung 2  a U-Net (skip connections) trained as a conditional GAN + 100 x L1
    rung 3  + the colour hint as input: the picture box-blurred until only a vague colour
            layout is left (the same hint in training and in the evaluation with hints)
    rung 4  + the hint whited out in training (30 random white squares, then the blur), so the
            net learns to colour where the hint says nothing; in use the hint is the picture
            faded to 0.3 * picture + 0.7 * white and blurred, no squares (what a user's rough
            colouring looks like), or no hint at all (all white). Here rung 4 trains on those
            two forms too: a quarter of its training hints are the post's whiteout, a quarter
            the use-time fade, and half all white (see Departures)

Key equations (x = line art and hint, y = the real picture, G(x) = the colouring, D a logit):

    D loss   = bce(D(x, y), 1) + bce(D(x, G(x)), 0)
    G loss   = bce(D(x, G(x)), 1) + 100 * mean |G(x) - y|       (non-saturating GAN + L1)
    rung 1   = mean (G(x) - y)^2                                 (no discriminator)
    Adam 2e-4, beta1 0.5; every conv 5x5 stride 2 "same", weights N(0, 0.02)

Network (the original's, widths given for its width 64):
    generator  encoder 64-128-256-512-512 (no batch norm on the first; leaky ReLU 0.2 before
               each next conv), decoder transposed convs 512-256-128-64-3 with batch norm and a
               ReLU before each, each output concatenated with the encoder output of its size
               (the skips; rung 1 has none), tanh out. Inputs and targets are scaled to [-1, 1]
               so the tanh range matches the targets.
    discrim.   line + hint + picture (7 channels; 4 without hints): conv 64-128-256-512 (the
               last stride 1), batch norm but not on the first, leaky ReLU 0.2, linear to 1.
    depth      the number of encoder levels; 5 at every size by default, so the bottleneck is
               size/32 (8 px at 256 as the original, 4 at 128, 2 at 64).
    sizes      128 px by default (the original trained at 256: --size 256 works, slowly), 64 px
               in the quick preset; pictures whose sides are not multiples of 2^depth are padded
               with white paper and the output cropped back.

Run:  python -m minimal.demos.deepcolor [--quick] [--rungs 1,4] [--size 256] [--resume]

Colouring your own drawing (loads the rung-4 generator of the checkpoint a run saved):

    python -m minimal.demos.deepcolor --quick                  # trains, saves the checkpoint
    python -m minimal.demos.deepcolor --colorize LINE.png [--hint HINT.png] --out OUT.png

LINE.png: any size and mode (grey, RGB, RGBA with transparency as white paper). It is resized
so its longer side is the trained size, traced again with the training's adaptive threshold (so
it looks like the line art the net learned from), coloured, and scaled back to the input's size;
the drawing's own lines are then multiplied over the colours so they stay crisp. HINT.png: a
rough colouring of any size (stretched to the drawing), faded to 0.3 * hint + 0.7 * white and
blurred as the post does (--hint-fade 1 keeps a sparse scribble's full strength, blur only);
without one the hint is all white, as the post describes. --checkpoint picks another checkpoint
than out_dir/checkpoint.npz. `load_colorizer(path)` and `colorize(generator, line, hint)`
(arrays in, array out) are the same steps for other callers.

Colouring in the browser (the post's online demo; minimal/app/webapp.py, the standard library's
HTTP server, nothing fetched from elsewhere):

    python -m minimal.demos.deepcolor --serve [--port 8000] [--checkpoint PATH]

then open http://127.0.0.1:8000/: upload line art or pick an example (cartoons the net never
saw, the photograph's line art), paint hints with the brush, press Colour (or No hint), download
the result. --hint-fade applies as in --colorize (1 keeps the strokes' full strength). It
listens on 127.0.0.1 only; --host 0.0.0.0 lets other computers in (with a warning).

Figures (in out_dir):
    ladder.png      one held-out picture per row: line art, the use-time hint, rung 1, rung 2,
                    rung 3, rung 4 (rungs 3 and 4 with the hint), rung 4 without a hint, and the
                    original
    hints.png       the hint's processing: original, whited out, blurred (the post's training
                    hint), the use-time hint (faded and blurred), no hint (all white): rung 4
                    trains on a quarter, a quarter and a half of the last three
    scribble.png    a user-style scribble made by the demo (wobbly broad strokes in colours a
                    user would pick), the hint it becomes with the post's 0.3 fading and with
                    the blur only (--hint-fade 1), rung 4's colouring with each, without a
                    hint, and the original
    photo.png       a real photograph's line art coloured by rung 4 without and with a hint
    losses.png      D loss, G adversarial loss and L1 over training for rungs 2-4, rung 1's L2
                    (as its square root, to share the L1 panel), in the nets' [-1, 1] units

Scale: the full defaults are 128 px, width 32 (half the original's), 2048 pictures, 2000 steps
of batch 4 per rung: about 70 minutes of one core. The quick preset is scaled down to finish in
about a minute on 2 cores: 64 px, width 8, depth 4 (bottleneck 4 px), 256 pictures, 300 steps
per rung, and Adam 1e-3 instead of 2e-4 (a run this short needs the larger step). In both,
Adam's step falls linearly to 0 over each rung's second half (decay_from 0.5; the post keeps
it constant, see Departures).

Departures from the original: the original's bugs are fixed (the generator's batch-norm scale
and offset are trained; the tanh output is compared with targets in [-1, 1], not [0, 1];
evaluation uses the running statistics, not the statistics of a batch of one picture). Adam's
step falls to 0 over each rung's second half (decay_from; the post: 1, constant): at a constant
step a GAN ends wherever its last steps threw it, and which rung came out ahead changed from
seed to seed (full preset at the post's constant 2e-4: rung 4 with its hint at 0.69 of the L2
net's L1 on seed 0 and 0.98 on seed 1, where without a hint it painted bright cyan skies over
lime hills). Rung 4 trains on the hints it is used with (faded_hints, white_hints; the post: 0
and 0). The post trains it on the whiteout alone: about a third of the picture's colour at full
strength, in patches; at use it gets the fade (on average as much colour, but spread evenly, a
form it never saw) or no hint (all white, which it never saw either). Trained so, at the full
preset (seed 0) it is no better than the L2 net with its hint (L1 0.136 against 0.142) and
without a hint washes every picture out (0.232, worse than the untrained net's 0.197; chroma
0.46 of the originals'). Half of the training hints are empty because colouring with no hint is
the hardest of the three (the net colours everything itself): with a third of each (seed 0, at
a constant step), the full preset's rung 4 without a hint painted over-saturated colours (L1
0.179, chroma 1.51 of the originals'). The data are flat-coloured cartoon scenes drawn by
minimal.data (or your folder of pictures with --data), not anime illustrations; the nets are
narrower and trained for minutes, not 16 GPU hours, so the colours are flatter and the GAN's
sharpening is modest.

Results (seed 0; held-out pictures, 8 in the quick run and 16 in the full one; L1 is the mean
absolute error per channel in [0, 1], chroma the mean max(R,G,B) - min(R,G,B); "hint" is the
blurred picture for rung 3 and the faded use-time hint for rung 4; on synthetic cartoons, so no
number of the post's is comparable; 1 BLAS thread):
                              quick (64 px, 300 steps)        full (128 px, 2000 steps)
    rung                      L1 no hint/hint  chroma no/hint L1 no hint/hint  chroma no/hint
    1 conv net, L2            0.152  -         0.238  -       0.142  -         0.263  -
    2 GAN + U-Net             0.152  -         0.251  -       0.132  -         0.297  -
    3 + blurred hint          0.383  0.083     0.090  0.288   0.410  0.045     0.069  0.307
    4 + whiteout, trained on  0.141  0.122     0.212  0.254   0.135  0.085     0.294  0.290
      the hints in use
    4 as the post trains it   0.222  0.114     0.141  0.249   0.232  0.136     0.146  0.234
      (whiteout only)
    untrained rung 4          0.194                           0.197
    blurred picture alone     0.096                           0.098
    faded use-time hint alone 0.350                           0.343
    the originals' chroma                      0.292                           0.315
    CPU time                  about 45 s (peak memory 174 MB) about 70 min (peak 1.8 GB)

The claims (run.json): rung 4 with its hint over the L2 net, l1_rung4_hint_over_rung1: quick
0.80, full 0.60 / 0.65 / 0.58 on seeds 0 / 1 / 2; rung 4 without a hint minus the L2 net,
l1_rung4_minus_rung1: quick -0.011, full -0.007 / +0.004 / +0.001; its chroma over the
originals', chroma_rung4_over_originals: quick 0.73, full 0.93 / 0.96 / 0.89. At full size,
on all three seeds, rung 4 with the hint is the best of the rungs that do not see the blurred
picture (0.085 / 0.086 / 0.080; rung 2, the next, 0.132 / 0.126 / 0.143) and without a hint
colours about as well as the L2 net on L1, in nearly the originals' saturation.

Over seeds 0-4 of the quick preset rung 4 with its hint has the lowest L1 of rungs 1, 2 and 4
on all five (0.80 / 0.92 / 0.91 / 0.80 / 0.83 of the L2 net's) and without a hint is within
+0.02 of the L2 net on all five, with chroma 0.73 / 0.86 / 0.84 / 0.79 / 0.86 of the
originals' (the falling step leaves the quick preset's colours muted: the L2 net's own chroma
is 0.73-0.86 of the originals' over those seeds). The row "as the post trains it" is
--faded-hints 0 --white-hints 0 (full column: rung 4 resumed from the seed-0 run's checkpoint at
the end of rung 3, so rungs 1-3 are the same run's).

What the numbers say, as the post found: the L2 net settles on the average colouring (blue sky
over green hills, objects in grey-brown) and is the dullest; the GAN + U-Net is more colourful
(sharper, with some wrong colours, so its L1 is about the same); given the blurred picture,
rung 3 is best with its hint and useless without one (it learned to copy the hint, so a white
hint gives a white picture); rung 4 colours on its own where the hint says nothing and follows
the faint use-time hint where it says something: with that hint it is the best of the rungs
that do not see the blurred picture (full: 35-42% under the L2 net over seeds 0-2), and without
any hint it colours as well as the L2 net on L1, in the GAN's colours. Trained on the whiteout
alone, as in the post, the same net without a hint washes the picture out (chroma 0.48 of the
originals' in the quick run, 0.46 at full size, where it is worse than the untrained net),
because no hint is a form it never saw; at full size (seed 0) its hint helps it little (0.136
against the L2 net's 0.142). In the quick run no net beats simply blurring the original on L1:
the nets are small and trained for minutes, and L1 rewards blur. At full size rung 3 with its
hint is far ahead (the colours are the original's, the edges crisp, better than the blurred
hint itself). Colouring a real photograph's line art (benchmarks/deepcolor_strokes.py, the full
seed-0 net: three strokes in colours the net does not pick there by itself, at full strength
with --hint-fade 1): the colour under each stroke turns to the stroke's hue (cosine +0.99,
+1.00 and +0.81 against -0.20, -0.75 and -0.74 without a hint); with the post's 0.3 fade only
the first follows (+0.66). Other runs, the screening of the hint mix and thread counts are in
benchmarks/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minimal import data, nn, optim
from minimal import functional as F
from minimal.app import cli, training, viz
from minimal.app import colorize as colorize_app
from minimal.autograd import Tensor, concatenate, no_grad
from minimal.errors import ConfigError, DataError

RUNGS = (1, 2, 3, 4)
SIZES = (32, 64, 128, 256)
RUNG_NAMES = {1: "1 conv net, L2", 2: "2 GAN + U-Net", 3: "3 + hint", 4: "4 + whiteout"}
TRAIN_COMMAND = "python -m minimal.demos.deepcolor --quick (or without --quick for the full run)"


@dataclass
class Config:
    seed: int = 0  # seed for every random number in the run
    size: int = 128  # picture side in pixels (32, 64, 128 or 256)
    train_images: int = 2048  # training pictures
    test_images: int = 16  # held-out pictures for the metrics and the ladder
    iterations: int = 2000  # training steps per rung
    batch_size: int = 4  # pictures per step
    width: int = 32  # channels of the first conv (the original 64); doubles per level, cap 8x
    depth: int = 5  # encoder levels of the generator (bottleneck = size / 2^depth)
    lr: float = 2e-4  # Adam step for both nets
    beta1: float = 0.5  # Adam beta1
    decay_from: float = 0.5  # share of a rung's steps after which Adam's step falls to 0 (1: never)
    l1_weight: float = 100.0  # weight of the L1 term in the generator's loss
    faded_hints: float = 0.25  # rung 4: share of training hints in the use-time form (post: 0)
    white_hints: float = 0.5  # rung 4: share of training hints all white, no hint (the post: 0)
    rungs: tuple = RUNGS  # which rungs of the ladder to train (1, 2, 3, 4)
    save_every: int = 100  # steps between checkpoints
    data: str = ""  # a folder of pictures to colour (empty: the synthetic cartoons)
    resume: bool = False  # continue from out_dir/checkpoint.npz
    out_dir: str = "outputs/deepcolor"  # where figures and the checkpoint are written
    colorize: str = ""  # colour this line-art file with a trained model instead of training
    hint: str = ""  # with --colorize: a rough colouring of the drawing (empty: all white)
    out: str = ""  # with --colorize: where the coloured picture is written
    checkpoint: str = ""  # --colorize, --serve: the checkpoint (empty: out_dir/checkpoint.npz)
    hint_fade: float = 0.3  # with --hint: share of the hint's colour over white before the blur
    serve: bool = False  # serve a web page to colour drawings in the browser instead of training
    port: int = 8000  # with --serve: the port to listen on (0: any free port)
    host: str = "127.0.0.1"  # with --serve: the address to listen on (another lets others in)

    def __post_init__(self):
        cli.validate(self, counts=("train_images", "test_images", "iterations", "batch_size",
                                   "width", "depth", "save_every"),
                     positive=("lr", "l1_weight", "hint_fade"),
                     fractions=("beta1", "hint_fade", "faded_hints", "white_hints",
                                "decay_from"),
                     choices={"size": SIZES, "rungs": RUNGS})
        self.rungs = tuple(sorted(set(self.rungs)))  # each rung once, bottom of the ladder first
        if self.faded_hints + self.white_hints > 1:
            raise ConfigError("faded_hints + white_hints (--faded-hints, --white-hints) are "
                              "shares of rung 4's training hints and must add up to at most 1, "
                              f"got {self.faded_hints} + {self.white_hints}")
        if self.batch_size < 2:
            raise ConfigError("batch_size (--batch-size) must be at least 2: batch norm "
                                  f"needs two pictures per step, got {self.batch_size}")
        if 2 ** self.depth > self.size:
            raise ConfigError(f"depth (--depth) {self.depth} halves a {self.size} px "
                                  "picture below one pixel; use a smaller depth")
        if self.colorize and not self.out:
            raise ConfigError("--colorize needs --out, the file to write the colouring to")
        if not (isinstance(self.port, int) and 0 <= self.port <= 65535):
            raise ConfigError(f"port (--port) must be a whole number from 0 to 65535, got "
                              f"{self.port!r}")
        if not self.host.strip():
            raise ConfigError("host (--host) must be an address such as 127.0.0.1, got ''")
        if self.serve and self.colorize:
            raise ConfigError("--serve and --colorize are two uses of a trained net; pick one")


# quick: 64 px, narrower nets, fewer pictures and steps (about a minute on 2 cores)
QUICK = {"size": 64, "train_images": 256, "test_images": 8, "iterations": 300, "width": 8,
         "depth": 4, "lr": 1e-3, "save_every": 100}

TARGETS = {  # quick preset, seed 0 (1 BLAS thread: 0.122, 0.80, -0.011, 0.82; 2: 0.125, 0.83)
    "l1_rung4_hint": ("<=", 0.135),  # rung 4 with the use-time hint (rung 1: 0.152)
    "l1_rung4_hint_over_rung1": ("<=", 0.9),  # under the L2 net with the hint (full: 0.60)
    "l1_rung4_minus_rung1": ("<=", 0.02),  # and without one no worse than it (+ 0.02)
    "chroma_rung1_over_originals": ("<=", 0.93),  # the L2 net's colours are duller
}


# ===== the networks ========================================================================

def _init_conv(layer: nn.Module, rng: np.random.Generator) -> nn.Module:
    """The original's initialisation: weights N(0, 0.02), biases 0."""
    layer.weight.data = nn.normal(layer.weight.shape, 0.02, rng)
    layer.bias.data = np.zeros(layer.bias.shape, np.float32)
    return layer


def down(in_channels: int, out_channels: int, rng: np.random.Generator) -> nn.Conv2d:
    """5x5 stride-2 'same' conv: H -> ceil(H / 2)."""
    return _init_conv(nn.Conv2d(in_channels, out_channels, 5, stride=2, padding=2, rng=rng), rng)


def up(in_channels: int, out_channels: int, rng: np.random.Generator) -> nn.ConvTranspose2d:
    """5x5 stride-2 'same' transposed conv: H -> 2H."""
    return _init_conv(nn.ConvTranspose2d(in_channels, out_channels, 5, stride=2, padding=2,
                                         output_padding=1, rng=rng), rng)


def level_widths(width: int, depth: int) -> list[int]:
    """Channels per encoder level: 64-128-256-512-512 for width 64, depth 5."""
    return [width * min(2 ** level, 8) for level in range(depth)]


class Generator(nn.Module):
    """Encoder-decoder on line art (+ hint). With skips it is the U-Net of pix2pix and the
    post; without, the plain conv net of rung 1. Input (N, C, H, W) in [-1, 1], H and W
    multiples of 2^depth (see `generate` for other sizes); output (N, 3, H, W) in [-1, 1]."""

    def __init__(self, in_channels: int, width: int, depth: int, skips: bool,
                 rng: np.random.Generator):
        super().__init__()
        self.skips, self.depth = skips, depth
        widths = level_widths(width, depth)
        self.encoder = nn.ModuleList([down(in_channels, widths[0], rng)] + [
            down(widths[level - 1], widths[level], rng) for level in range(1, depth)])
        # no batch norm after the first conv (the original's choice, and pix2pix's)
        self.encoder_norm = nn.ModuleList([nn.BatchNorm2d(w) for w in widths[1:]])
        self.decoder = nn.ModuleList()
        self.decoder_norm = nn.ModuleList()
        channels = widths[-1]
        for level in range(depth - 2, -1, -1):  # back up to the first level's size
            self.decoder.append(up(channels, widths[level], rng))
            self.decoder_norm.append(nn.BatchNorm2d(widths[level]))
            channels = widths[level] * (2 if skips else 1)  # the skip doubles what comes in
        self.decoder.append(up(channels, 3, rng))

    def forward(self, x: Tensor) -> Tensor:
        features = [self.encoder[0](x)]  # (N, w, H/2, W/2)
        for conv, norm in zip(self.encoder[1:], self.encoder_norm):
            features.append(norm(conv(features[-1].leaky_relu(0.2))))  # (N, w_l, H/2^l, ...)
        h = features[-1]
        for index, (conv, norm) in enumerate(zip(self.decoder[:-1], self.decoder_norm)):
            h = norm(conv(h.relu()))  # twice the size, the next level's width
            if self.skips:
                h = concatenate([h, features[-2 - index]], axis=1)  # (N, 2 w_l, ...)
        return self.decoder[-1](h.relu()).tanh()  # (N, 3, H, W)


class Discriminator(nn.Module):
    """conv 64-128-256-512 (last stride 1), batch norm except on the first, leaky ReLU 0.2,
    linear to one logit per picture (not per patch, as the original)."""

    def __init__(self, in_channels: int, width: int, size: int, rng: np.random.Generator):
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.convs = nn.ModuleList([down(in_channels, widths[0], rng), down(widths[0], widths[1],
                                    rng), down(widths[1], widths[2], rng),
                                    _init_conv(nn.Conv2d(widths[2], widths[3], 5, stride=1,
                                                         padding=2, rng=rng), rng)])
        self.norms = nn.ModuleList([nn.BatchNorm2d(w) for w in widths[1:]])
        side = -(-size // 8)
        self.linear = nn.Linear(widths[3] * side * side, 1, rng=rng)
        self.linear.weight.data = nn.normal(self.linear.weight.shape, 0.02, rng)
        self.linear.bias.data = np.zeros(1, np.float32)

    def forward(self, x: Tensor) -> Tensor:
        h = self.convs[0](x).leaky_relu(0.2)  # (N, w, H/2, W/2)
        for conv, norm in zip(self.convs[1:], self.norms):
            h = norm(conv(h)).leaky_relu(0.2)  # (N, 8w, H/8, W/8) at the end
        return self.linear(h.reshape(h.shape[0], -1))  # (N, 1)


def uses_hint(rung: int) -> bool:
    return rung >= 3


def make_rung(rung: int, config: Config, rng: np.random.Generator):
    """The generator (and, from rung 2 on, the discriminator) of one rung."""
    line_and_hint = 4 if uses_hint(rung) else 1
    generator = Generator(line_and_hint, config.width, config.depth, skips=rung >= 2, rng=rng)
    if rung == 1:
        return generator, None
    return generator, Discriminator(line_and_hint + 3, config.width, config.size, rng)


# ===== pictures in, pictures out ===========================================================

def to_net(images: np.ndarray) -> np.ndarray:
    """(N, H, W, C) or (N, H, W) in [0, 1] -> (N, C, H, W) in [-1, 1], as the tanh output."""
    images = images[..., None] if images.ndim == 3 else images
    return (images.transpose(0, 3, 1, 2) * 2 - 1).astype(np.float32)


def from_net(output: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) in [0, 1]."""
    return ((output.transpose(0, 2, 3, 1) + 1) / 2).clip(0, 1).astype(np.float32)


def blurred(image: np.ndarray) -> np.ndarray:
    """Rung 3's hint: the picture box-blurred (100 px at 256, scaled) with nothing whited out;
    data.colour_hint is the same blur after the whiteout (train) or the fading (use)."""
    from scipy.ndimage import uniform_filter

    side = max(1, round(100 * image.shape[0] / 256))
    return uniform_filter(np.asarray(image, np.float32), size=(side, side, 1), mode="mirror")


def net_input(rung: int, lines: np.ndarray, hints: np.ndarray | None) -> np.ndarray:
    """The generator's input: line art (N, 1, H, W), with the hint's 3 channels from rung 3."""
    if not uses_hint(rung):
        return to_net(lines)
    return np.concatenate([to_net(lines), to_net(hints)], axis=1)


def generate(generator: Generator, inputs: np.ndarray) -> np.ndarray:
    """Run a generator in evaluation mode (running batch-norm statistics, not those of the
    batch) on inputs (N, C, H, W) of any size: padded with white paper (+1) up to a multiple of
    2^depth, cropped back after. Returns (N, 3, H, W) in [-1, 1]."""
    multiple = 2 ** generator.depth
    height, width = inputs.shape[2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    padded = np.pad(inputs, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), constant_values=1.0)
    was_training = generator.training
    generator.eval()
    try:
        with no_grad():
            output = generator(Tensor(padded)).data
    finally:
        generator.train(was_training)
    return output[:, :, :height, :width]


def colour(generator: Generator, rung: int, lines: np.ndarray,
           hints: np.ndarray | None = None) -> np.ndarray:
    """Colourings (N, H, W, 3) in [0, 1] of line art (N, H, W), hints (N, H, W, 3) or None."""
    if uses_hint(rung) and hints is None:
        hints = np.ones(lines.shape + (3,), np.float32)  # all white: "no hint", as the post
    return from_net(generate(generator, net_input(rung, lines, hints)))


def chroma(images: np.ndarray) -> float:
    """Colourfulness: the mean over pixels of max(R, G, B) - min(R, G, B) (HSV chroma); 0 for
    any grey picture."""
    return float((images.max(axis=-1) - images.min(axis=-1)).mean())


# ===== training ============================================================================

def prepare(config: Config) -> dict[str, np.ndarray]:
    """Training and held-out pictures with their line art and rung 3's blurred hints."""
    total = config.train_images + config.test_images
    images = data.load("illustrations", total, config.seed, path=config.data or None,
                       size=config.size)
    if len(images) < config.test_images + config.batch_size:
        raise DataError(f"--data {config.data}: {len(images)} pictures; need at least "
                        f"{config.test_images + config.batch_size} (test images + one batch)")
    images = images.astype(np.float32)
    lines = np.stack([data.line_art(image) for image in images])
    blurs = np.stack([blurred(image) for image in images])
    split = len(images) - config.test_images
    return {"train": images[:split], "train_lines": lines[:split], "train_blurs": blurs[:split],
            "test": images[split:], "test_lines": lines[split:], "test_blurs": blurs[split:]}


def training_hints(rung: int, pictures: dict, index: np.ndarray, rng: np.random.Generator,
                   config: Config) -> np.ndarray | None:
    """The hints a rung trains with (N, H, W, 3), or None for rungs 1-2. Rung 3: the blurred
    picture. Rung 4: the picture with 30 squares whited out, blurred (a fresh whiteout every
    time a picture is drawn); a share faded_hints of them in the use-time form instead (faded
    to 0.3 and blurred, no squares) and a share white_hints all white."""
    if rung == 3:
        return pictures["train_blurs"][index]
    if rung != 4:
        return None
    # every picture draws its squares, whichever form it gets, so the draws do not depend on it
    hints = np.stack([data.colour_hint(pictures["train"][i], rng, train=True) for i in index])
    if config.faded_hints > 0 or config.white_hints > 0:
        form = rng.random(len(index))  # [0, faded_hints): faded; then white_hints: all white
        for row in np.flatnonzero(form < config.faded_hints):
            hints[row] = data.colour_hint(pictures["train"][index[row]], train=False)
        hints[(form >= config.faded_hints) & (form < config.faded_hints + config.white_hints)] = 1
    return hints


def bce(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, np.full(logits.shape, target, np.float32))


def generator_loss(discriminator: Discriminator, x: Tensor, y: Tensor, fake: Tensor,
                   l1_weight: float) -> tuple[Tensor, Tensor, Tensor]:
    """(total, adversarial, l1): bce(D(x, G(x)), 1) + l1_weight * mean |G(x) - y|.
    Non-saturating: G maximises log D(x, G(x)) rather than minimising log(1 - D(x, G(x)))."""
    adversarial = bce(discriminator(concatenate([x, fake], axis=1)), 1.0)
    l1 = F.l1_loss(fake, y)
    return adversarial + l1_weight * l1, adversarial, l1


def train_step(generator: Generator, discriminator: Discriminator | None,
               adam_g: optim.Adam, adam_d: optim.Adam | None, inputs: np.ndarray,
               targets: np.ndarray, config: Config, state: training.TrainingState,
               where: str) -> dict[str, float]:
    """One step of one rung: the discriminator's step, then the generator's (rung 1, with no
    discriminator: the L2 step alone). Returns the losses. inputs (N, C, H, W) and targets
    (N, 3, H, W) in [-1, 1]."""
    x, y = Tensor(inputs), Tensor(targets)
    fake = generator(x)  # (N, 3, H, W)
    if discriminator is None:  # rung 1: the plain regression the post starts from
        l2 = F.mse_loss(fake, y)
        state.check_finite(where, l2=l2)
        adam_g.zero_grad()
        l2.backward()
        adam_g.step()
        return {"l2": float(l2.data)}
    real_logits = discriminator(concatenate([x, y], axis=1))  # (N, 1)
    fake_logits = discriminator(concatenate([x, fake.detach()], axis=1))
    loss_d = bce(real_logits, 1.0) + bce(fake_logits, 0.0)
    state.check_finite(where, discriminator=loss_d)
    adam_d.zero_grad()
    loss_d.backward()
    adam_d.step()
    for param in discriminator.parameters():  # G's step needs no gradient for D's weights
        param.requires_grad = False
    try:
        loss_g, adversarial, l1 = generator_loss(discriminator, x, y, fake, config.l1_weight)
        state.check_finite(where, adversarial=adversarial, l1=l1)
        adam_g.zero_grad()
        loss_g.backward()
    finally:
        for param in discriminator.parameters():
            param.requires_grad = True
    adam_g.step()
    return {"d": float(loss_d.data), "gan": float(adversarial.data), "l1": float(l1.data)}


def build(config: Config, rng: np.random.Generator):
    """Every rung's nets and optimisers, in a fixed order (so the rng draws are the same)."""
    modules, optimizers = {}, {}
    for rung in config.rungs:
        generator, discriminator = make_rung(rung, config, rng)
        modules[f"rung{rung}"] = generator
        optimizers[f"rung{rung}"] = optim.Adam(generator.parameters(), config.lr,
                                               (config.beta1, 0.999))
        if discriminator is not None:
            modules[f"disc{rung}"] = discriminator
            optimizers[f"disc{rung}"] = optim.Adam(discriminator.parameters(), config.lr,
                                                   (config.beta1, 0.999))
    return modules, optimizers


def step_size(step: int, config: Config) -> float:
    """Adam's step at a rung's step (0-based): lr until decay_from of the steps, then falling
    linearly to 0 at the last step (decay_from 1: lr throughout, the post's)."""
    start = config.decay_from * config.iterations
    if step < start:
        return config.lr
    return config.lr * (config.iterations - step) / (config.iterations - start)


def train(config: Config, pictures: dict, rng: np.random.Generator,
          state: training.TrainingState, modules: dict, optimizers: dict,
          stop_after: int | None = None) -> None:
    """Train the rungs one after another; a checkpoint every `save_every` steps. stop_after
    (tests) returns after that many steps in all, as if the run had been interrupted."""
    done = 0
    for rung in config.rungs:
        generator, discriminator = modules[f"rung{rung}"], modules.get(f"disc{rung}")
        adam_g, adam_d = optimizers[f"rung{rung}"], optimizers.get(f"disc{rung}")
        start = state.counters.get(f"rung{rung}", 0)
        progress = cli.Progress(config.iterations, label=f"rung {rung} step", first=start)
        for step in range(start, config.iterations):
            index = rng.integers(0, len(pictures["train"]), config.batch_size)
            hints = training_hints(rung, pictures, index, rng, config)
            inputs = net_input(rung, pictures["train_lines"][index], hints)
            targets = to_net(pictures["train"][index])
            for optimizer in (adam_g, adam_d):
                if optimizer is not None:
                    optimizer.lr = step_size(step, config)
            losses = train_step(generator, discriminator, adam_g, adam_d, inputs, targets,
                                config, state, f"rung {rung}, step {step + 1}")
            for name, value in losses.items():
                state.history.setdefault(f"{name}{rung}", []).append(value)
            progress.update(step + 1, **losses)
            if (step + 1) % config.save_every == 0 or step + 1 == config.iterations:
                state.counters[f"rung{rung}"] = step + 1
                state.save()
            done += 1
            if stop_after is not None and done == stop_after:
                return


# ===== evaluation ==========================================================================

def faded_hint(hint: np.ndarray, fade: float = 0.3) -> np.ndarray:
    """A hint at use time: fade * hint + (1 - fade) * white, then the blur. fade 0.3 is the
    post's (data.colour_hint(hint, train=False)); a sparse scribble on white paper is already
    mostly white, like a whited-out picture, and may keep its full strength (fade 1)."""
    return blurred(fade * np.asarray(hint, np.float32) + (1 - fade))


def use_hints(pictures: dict, split: str = "test") -> np.ndarray:
    """Rung 4's use-time hints: each picture faded to 0.3 + 0.7 white, then blurred."""
    return np.stack([data.colour_hint(image, train=False) for image in pictures[split]])


def evaluate(config: Config, modules: dict, pictures: dict) -> tuple[dict, dict]:
    """Per rung, mean L1 to the originals and mean chroma on the held-out pictures, with and
    without hints. Returns (metrics, colourings by name for the figures)."""
    originals, lines = pictures["test"], pictures["test_lines"]
    hints = {3: pictures["test_blurs"], 4: use_hints(pictures)}
    metrics = {"chroma_originals": chroma(originals),
               "l1_hint_alone": float(np.abs(hints[4] - originals).mean()),
               "l1_blur_alone": float(np.abs(hints[3] - originals).mean())}
    outputs = {}
    for rung in config.rungs:
        generator = modules[f"rung{rung}"]
        outputs[rung] = colour(generator, rung, lines)  # rungs 3-4: an all-white hint
        metrics[f"l1_rung{rung}"] = float(np.abs(outputs[rung] - originals).mean())
        metrics[f"chroma_rung{rung}"] = chroma(outputs[rung])
        if uses_hint(rung):
            outputs[f"{rung}_hint"] = colour(generator, rung, lines, hints[rung])
            metrics[f"l1_rung{rung}_hint"] = float(np.abs(outputs[f"{rung}_hint"]
                                                          - originals).mean())
            metrics[f"chroma_rung{rung}_hint"] = chroma(outputs[f"{rung}_hint"])
    return metrics, outputs


def claims(metrics: dict) -> dict:
    """The post's claims as numbers (for the rungs trained): the L2 net's colours against the
    originals'; rung 4 with its hint against the L2 net (< 1: better) and without a hint (L1
    above the L2 net's, and its colour against the originals': colouring, not a wash)."""
    out = {}
    for rung in (1, 4):
        if f"chroma_rung{rung}" in metrics:
            out[f"chroma_rung{rung}_over_originals"] = (metrics[f"chroma_rung{rung}"]
                                                       / metrics["chroma_originals"])
    if "l1_rung1" in metrics and "l1_rung4" in metrics:
        out["l1_rung4_hint_over_rung1"] = metrics["l1_rung4_hint"] / metrics["l1_rung1"]
        out["l1_rung4_minus_rung1"] = metrics["l1_rung4"] - metrics["l1_rung1"]
    return out


# ===== figures =============================================================================

def _labelled_grid(columns: list[tuple[str, np.ndarray]], path: Path, title: str = "",
                   inches: float = 1.35) -> None:
    """A grid of pictures, one column per (label, (N, H, W[, 3]) batch), labels on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(columns[0][1])
    figure, axes = plt.subplots(rows, len(columns), squeeze=False,
                                figsize=(inches * len(columns), inches * rows))
    for col, (label, batch) in enumerate(columns):
        for row in range(rows):
            axis = axes[row, col]
            picture = batch[row]
            axis.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1,
                        interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(label, fontsize=7)
    if title:
        figure.suptitle(title, fontsize=8)
    viz.save_figure(figure, path, dpi=120)


def ladder_figure(config: Config, pictures: dict, outputs: dict, metrics: dict,
                  path: Path, rows: int = 6) -> None:
    n = min(rows, len(pictures["test"]))
    columns = [("line art", pictures["test_lines"][:n]),
               ("hint in use\n(rung 4)", use_hints(pictures)[:n])]
    for rung in config.rungs:
        key = f"{rung}_hint" if uses_hint(rung) else rung
        l1 = metrics[f"l1_rung{rung}_hint" if uses_hint(rung) else f"l1_rung{rung}"]
        columns.append((f"{RUNG_NAMES[rung]}\nL1 {l1:.3f}", outputs[key][:n]))
    if 4 in config.rungs:
        columns.append((f"4, no hint\nL1 {metrics['l1_rung4']:.3f}", outputs[4][:n]))
    columns.append(("original", pictures["test"][:n]))
    _labelled_grid(columns, path, "held-out pictures: the ladder (mean L1 over all held-out)")


def hint_steps_figure(pictures: dict, rng: np.random.Generator, path: Path, rows: int = 3):
    """original, whited out, whited out and blurred (the post's training hint), faded and
    blurred (the hint in use), all white (no hint): rung 4 trains on the last three."""
    originals = pictures["test"][:rows]
    whited = np.stack([_whiteout(image, rng) for image in originals])
    columns = [("original", originals), ("whited out", whited),
               ("blurred: the post's\ntraining hint", np.stack([blurred(im) for im in whited])),
               ("0.3 x + 0.7 white, blurred:\nthe hint in use", use_hints(pictures)[:rows]),
               ("all white:\nno hint", np.ones_like(originals))]
    _labelled_grid(columns, path, "rung 4 trains on the last three: a quarter, a quarter and "
                   "half of its hints")


def _whiteout(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The 30 white squares of data.colour_hint, before its blur (for the figure)."""
    image = image.copy()
    side = max(1, round(50 * image.shape[0] / 256))
    rows = rng.integers(0, max(1, image.shape[0] - side + 1), 30)
    cols = rng.integers(0, max(1, image.shape[1] - side + 1), 30)
    for row, col in zip(rows, cols):
        image[row:row + side, col:col + side] = 1.0
    return image


def scribble(image: np.ndarray, line: np.ndarray, rng: np.random.Generator,
             strokes: int = 10) -> np.ndarray:
    """A hint as a user would draw it: wobbly strokes of a broad brush on white paper, each in
    the colour the picture has where the stroke starts (a user picks the colour they want
    there), running off regardless of the lines, as a quick scribble does."""
    from PIL import Image, ImageDraw

    size = image.shape[0]
    canvas = Image.new("RGB", (image.shape[1], size), (255, 255, 255))
    pen = ImageDraw.Draw(canvas)
    paper = np.argwhere(line > 0.5)  # start inside regions, not on the lines
    for start in paper[rng.integers(0, len(paper), strokes)]:
        y, x = start
        colour_at = image[max(0, y - 1):y + 2, max(0, x - 1):x + 2].reshape(-1, 3).mean(0)
        points = [(float(x), float(y))]
        heading = rng.uniform(0, 2 * np.pi)
        for _ in range(5):
            heading += rng.normal(0, 0.6)
            step = size * rng.uniform(0.04, 0.1)
            x, y = x + step * np.cos(heading), y + step * np.sin(heading)
            points.append((float(np.clip(x, 0, size - 1)), float(np.clip(y, 0, size - 1))))
        pen.line(points, fill=tuple(int(255 * c) for c in colour_at),
                 width=max(2, size // 7), joint="curve")
    return np.asarray(canvas, np.float32) / 255.0


def scribble_figure(modules: dict, pictures: dict, rng: np.random.Generator, path: Path,
                    rows: int = 3) -> None:
    originals, lines = pictures["test"][:rows], pictures["test_lines"][:rows]
    scribbles = np.stack([scribble(image, line, rng) for image, line in zip(originals, lines)])
    faded = np.stack([faded_hint(s, 0.3) for s in scribbles])
    full = np.stack([faded_hint(s, 1.0) for s in scribbles])
    generator = modules["rung4"]
    columns = [("line art", lines), ("user scribble", scribbles),
               ("hint: faded 0.3,\nblurred (post)", faded),
               ("rung 4 with\nthe faded hint", colour(generator, 4, lines, faded)),
               ("hint: blurred\nonly (fade 1)", full),
               ("rung 4 with\nthe blurred hint", colour(generator, 4, lines, full)),
               ("rung 4, no hint", colour(generator, 4, lines)), ("original", originals)]
    _labelled_grid(columns, path)


def photo_figure(config: Config, modules: dict, path: Path) -> None:
    photo = data.sample_photo(config.size)
    line = data.line_art(photo)
    hint = data.colour_hint(photo, train=False)
    generator = modules["rung4"]
    columns = [("photograph", photo[None]), ("its line art", line[None]),
               ("rung 4, no hint", colour(generator, 4, line[None])),
               ("hint", hint[None]), ("rung 4 with the hint", colour(generator, 4, line[None],
                                                                     hint[None]))]
    _labelled_grid(columns, path, "a photograph (far from the training pictures), coloured",
                   inches=2.4)


def losses_figure(history: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gan_rungs = [r for r in (2, 3, 4) if f"d{r}" in history]
    panels = [("discriminator loss", "d"), ("generator adversarial loss", "gan"),
              ("L1 (train), rung 1: sqrt L2", "l1")]
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for axis, (title, key) in zip(axes, panels):
        for rung in gan_rungs:
            axis.plot(viz.smooth(history[f"{key}{rung}"], 20), label=f"rung {rung}",
                      color=f"C{rung - 1}")
        if key == "l1" and "l21" in history:  # history keys are the loss's name + the rung
            axis.plot(viz.smooth(np.sqrt(history["l21"]), 20), label="rung 1 (sqrt L2)",
                      color="C0")
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        if gan_rungs or key == "l1":
            axis.legend(fontsize=7)
    viz.save_figure(figure, path)


# ===== the run =============================================================================

def run(config: Config) -> dict[str, float]:
    if config.colorize:
        colorize_file(config)
        return {}
    rng = np.random.default_rng(config.seed)
    out_dir = Path(config.out_dir)
    pictures = prepare(config)
    modules, optimizers = build(config, rng)
    state = training.TrainingState("deepcolor", config, modules, optimizers, rng)
    top = max(config.rungs)
    untrained = colour(modules[f"rung{top}"], top, pictures["test_lines"],
                       use_hints(pictures) if uses_hint(top) else None)
    if config.resume:
        state.resume()
    train(config, pictures, rng, state, modules, optimizers)

    metrics, outputs = evaluate(config, modules, pictures)
    metrics[f"l1_untrained_rung{top}"] = float(np.abs(untrained - pictures["test"]).mean())
    metrics.update(claims(metrics))
    figure_rng = np.random.default_rng([config.seed, 1])  # figures do not move the training rng
    ladder_figure(config, pictures, outputs, metrics, out_dir / "ladder.png")
    hint_steps_figure(pictures, figure_rng, out_dir / "hints.png")
    losses_figure(state.history, out_dir / "losses.png")
    if 4 in config.rungs:
        scribble_figure(modules, pictures, figure_rng, out_dir / "scribble.png")
        photo_figure(config, modules, out_dir / "photo.png")
    return metrics


# ===== colorize: a user's drawing in, a coloured picture out ===============================

def load_colorizer(path: str | Path) -> tuple[Generator, int, int]:
    """The best generator of a training checkpoint (rung 4, else the highest rung trained),
    its rung and its training size; the error says how to train one when there is none."""
    # the checkpoint's settings first (any unreadable file is a one-line CheckpointError)
    saved = training.load_for_use(path, {}, TRAIN_COMMAND, demo="deepcolor")
    fields = {name: saved[name] for name in ("size", "width", "depth") if name in saved}
    rung = max(saved.get("rungs", [1]))
    config = Config(**fields, rungs=(rung,))
    generator, _ = make_rung(rung, config, np.random.default_rng(0))
    training.load_for_use(path, {f"rung{rung}": generator}, TRAIN_COMMAND, demo="deepcolor")
    return generator, rung, config.size


def colorize(generator: Generator, line: np.ndarray, hint: np.ndarray | None = None,
             size: int = 128, rung: int = 4, fade: float = 0.3) -> np.ndarray:
    """Colour a drawing: line (H, W) grey or (H, W, 3) in [0, 1], hint (h, w, 3) in [0, 1] or
    None (all white). Returns (H, W, 3) float32 in [0, 1], the drawing's size.

    At the trained `size` the hint is faded as in the post (fade 0.3: 0.3 * hint + 0.7 *
    white) and blurred, and the generator colours the traced line art with it; the steps
    around that (scaling the drawing to `size` and back, tracing it, its own lines multiplied
    over the colours) are colour_drawing in minimal/app/colorize.py.
    """
    def at_trained_size(traced: np.ndarray, small_hint: np.ndarray | None) -> np.ndarray:
        hints = None if small_hint is None else faded_hint(small_hint, fade)[None]
        return colour(generator, rung, traced[None], hints)[0]

    return colorize_app.colour_drawing(at_trained_size, line, hint if uses_hint(rung) else None,
                                       size)


def trained_colouring(config: Config) -> tuple[colorize_app.Colour, str, int]:
    """The checkpoint's generator (--checkpoint, else out_dir's) as a colouring of drawings of
    any size, what it is ("rung 4 of PATH") and the size it was trained at."""
    checkpoint = config.checkpoint or str(Path(config.out_dir) / training.CHECKPOINT_NAME)
    generator, rung, size = load_colorizer(checkpoint)

    def colour_any(line: np.ndarray, hint: np.ndarray | None) -> np.ndarray:
        return colorize(generator, line, hint, size, rung, config.hint_fade)

    return colour_any, f"rung {rung} of {checkpoint}", size


def colorize_file(config: Config) -> Path:
    """--colorize LINE --out OUT [--hint HINT]: write the colouring at the drawing's size."""
    def load():
        colour_any, what, _ = trained_colouring(config)
        return colour_any, what

    return colorize_app.colorize_file(config.colorize, config.hint, config.out, load)


def serve_page(config: Config) -> None:
    """--serve: the colouring page with the checkpoint's generator; the examples are cartoons
    drawn with another seed than training's, and the photograph."""
    def load():
        colour_any, what, size = trained_colouring(config)
        return colour_any, (f"{what}, trained at {size} px; hints are faded to "
                            f"{config.hint_fade:g} of their colour and blurred, as in the post")

    colorize_app.serve(load, title="deepcolor: colour your line art", host=config.host,
                       port=config.port, example_seed=config.seed + 1)


def main(argv: list[str] | None = None) -> None:
    """--colorize colours a file, --serve serves the page (no run record, no training);
    anything else trains."""
    config = cli.parse_config(Config, QUICK, argv, (__doc__ or "").strip())
    if not (config.colorize or config.serve):
        cli.main(__name__, argv)
        return
    colorize_app.command("deepcolor", lambda: serve_page(config) if config.serve
                         else colorize_file(config))


if __name__ == "__main__":
    main()
