"""minimal/rl/render.py: CartPole drawn where the state says, and a greedy episode's frames."""

import numpy as np

from minimal.rl.render import cartpole_frame, episode_frames
from minimal.rl.rollouts import Actor, PolicySpec


def pole_pixels(frame: np.ndarray) -> np.ndarray:
    """(row, column) of the pixels painted in the pole's colour."""
    return np.argwhere(np.all(np.isclose(frame, (0.8, 0.6, 0.4)), axis=-1))


def test_the_cart_moves_with_x_and_the_pole_leans_with_theta():
    centre, right = cartpole_frame(0.0, 0.0), cartpole_frame(1.2, 0.0)
    left_edges = [np.argwhere(np.all(np.isclose(f, 0.15), axis=-1))[:, 1].min()
                  for f in (centre, right)]
    assert abs(left_edges[1] - left_edges[0] - 1.2 * 240 / 4.8) <= 1  # 60 pixels to the right
    upright, leaning = pole_pixels(cartpole_frame(0.0, 0.0)), pole_pixels(cartpole_frame(0.0, 0.4))
    assert np.ptp(upright[:, 1]) <= 4  # a vertical pole: one narrow column
    top = leaning[leaning[:, 0].argmin()]
    assert top[1] > 120 + 15  # theta > 0 leans right: the tip is right of the cart


def test_a_greedy_episode_plays_the_policy_and_keeps_every_kth_frame():
    spec = PolicySpec(obs_dim=4, act_dim=2, hidden=(), discrete=True)
    # push towards the side the pole leans to (logits theta_dot * (-1, 1)): balances for long
    weights = np.zeros((2, 4))
    weights[:, 3] = (-1.0, 1.0)
    balancing = Actor(spec, np.concatenate([weights.ravel(), np.zeros(2)]))
    always_left = Actor(spec, np.concatenate([np.zeros(8), [1.0, 0.0]]))
    frames, total, seconds = episode_frames("CartPole-v1", balancing, seed=0, max_steps=60,
                                            every=4)
    assert total == 60 and len(frames) == 1 + 60 // 4 and seconds == 0.02 * 4
    assert frames[0].shape == (120, 240, 3)
    _, fell, _ = episode_frames("CartPole-v1", always_left, seed=0, max_steps=500, every=4)
    assert fell < 60  # pushed one way, the pole falls within a few dozen steps
