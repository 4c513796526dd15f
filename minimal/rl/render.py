"""Watching a policy act: the frames of one episode, CartPole drawn in NumPy and any other task
by its own renderer (MuJoCo offscreen: MUJOCO_GL=egl, set by default here; without a GPU driver
MUJOCO_GL=osmesa with libosmesa6 installed)."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np

from minimal.rl.envs import make as make_env
from minimal.rl.rollouts import Actor


def cartpole_frame(x: float, theta: float, width: int = 240, height: int = 120) -> np.ndarray:
    """One CartPole picture drawn with NumPy: track, cart and pole (gymnasium's geometry:
    the track is +-2.4, the pole 1.0 long), as an (height, width, 3) array in [0, 1]."""
    scale = width / 4.8                                   # pixels per metre
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    frame = np.ones((height, width, 3))
    ground = 0.8 * height
    frame[np.abs(rows - ground) < 1.0] = 0.0              # the track
    cart_x = (x + 2.4) * scale
    cart = (np.abs(cols - cart_x) <= 0.2 * scale) & (rows <= ground) & \
        (rows >= ground - 0.24 * scale)
    frame[cart] = (0.15, 0.15, 0.15)
    pivot = np.array([ground - 0.24 * scale, cart_x])     # (row, col): top of the cart
    tip = pivot + scale * np.array([-np.cos(theta), np.sin(theta)])
    # distance of every pixel to the pole's segment, pivot -> tip
    along = tip - pivot
    t = np.clip(((rows - pivot[0]) * along[0] + (cols - pivot[1]) * along[1])
                / (along @ along), 0.0, 1.0)
    distance = np.hypot(rows - pivot[0] - t * along[0], cols - pivot[1] - t * along[1])
    frame[distance <= 0.04 * scale] = (0.8, 0.6, 0.4)
    frame[np.hypot(rows - pivot[0], cols - pivot[1]) <= 0.03 * scale] = (0.5, 0.5, 0.8)
    return frame


def greedy_episode_frames(env, actor: Actor, seed: int, every: int, max_steps: int,
                          draw) -> tuple[list[np.ndarray], float]:
    """Play one episode with the policy's most likely action (the mean of a Gaussian policy);
    keep every `every`-th frame, draw(observation) making each. Returns (frames, return)."""
    observation, _ = env.reset(seed=seed)
    box = isinstance(env.action_space, gym.spaces.Box)
    frames, total, step = [draw(observation)], 0.0, 0
    done = False
    while not done and step < max_steps:
        out = actor.output(observation)
        action = np.clip(out, env.action_space.low, env.action_space.high) if box else \
            int(np.argmax(out))
        observation, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        step += 1
        done = terminated or truncated
        if step % every == 0:
            frames.append(draw(observation))
    return frames, total


def greedy_return(env_id: str, actor: Actor, episodes: int, seed: int) -> float:
    """The mean return of `episodes` greedy episodes (the policy's most likely action), each
    reset with its own seed from `seed`: the deterministic evaluation of a stochastic policy."""
    env = make_env(env_id)
    seeds = np.random.SeedSequence(seed).generate_state(episodes)
    limit = env.spec.max_episode_steps if env.spec is not None else None
    total = 0.0
    for episode_seed in seeds:
        total += greedy_episode_frames(env, actor, int(episode_seed), every=1 << 30,
                                       max_steps=limit or 10**6, draw=lambda _: None)[1]
    env.close()
    return total / episodes


def is_mujoco(env_id: str) -> bool:
    return "mujoco" in str(getattr(gym.spec(env_id), "entry_point", ""))


def episode_frames(env_id: str, actor: Actor, seed: int = 0, max_steps: int = 500,
                   every: int = 4, size: int = 160) -> tuple[list[np.ndarray], float, float]:
    """The frames of one greedy episode, its return, and the seconds each frame stands for.

    CartPole is drawn by cartpole_frame; a MuJoCo task by its offscreen renderer, followed by
    its model's tracking camera where it has one (Reacher is seen from above instead); a task
    of at most 100 steps keeps every frame."""
    if env_id.startswith("CartPole"):
        env = make_env(env_id)
        frames, total = greedy_episode_frames(
            env, actor, seed, every, max_steps, lambda obs: cartpole_frame(obs[0], obs[2]))
    else:
        os.environ.setdefault("MUJOCO_GL", "egl")  # read when the first renderer is made
        import mujoco

        # Reacher's default view is far and slanted: look straight down from closer
        view = ({"default_camera_config": {"trackbodyid": 0, "distance": 0.9,
                                           "elevation": -90.0, "azimuth": 90.0}}
                if env_id.startswith("Reacher") else {})
        env = make_env(env_id, render_mode="rgb_array", width=size, height=size, **view)
        limit = env.spec.max_episode_steps if env.spec is not None else None
        if limit is not None and limit <= 100:
            every = 1  # short episodes (Reacher: 50 steps): keep every frame
        # the runners leave the default free camera's view; their models' "track" camera
        # follows the centre of mass (Reacher has none and stays in view)
        camera = mujoco.mj_name2id(env.unwrapped.model, mujoco.mjtObj.mjOBJ_CAMERA, "track")
        if camera >= 0:
            env.unwrapped.mujoco_renderer.camera_id = camera
        frames, total = greedy_episode_frames(env, actor, seed, every, max_steps,
                                              lambda _: env.render().copy())
    env.close()
    return frames, total, 0.02 * every  # MuJoCo's tasks step 0.01-0.05 s
