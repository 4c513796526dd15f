"""Rollout workers: identical batches for any number of workers, failures and exits."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from minimal.rl.rollouts import (
    Actor,
    PolicySpec,
    RolloutPool,
    RunningMeanStd,
    WorkerError,
    episode_seeds,
    pack_episode,
    run_episode,
    unpack_episode,
)

ROOT = Path(__file__).resolve().parents[2]
CARTPOLE = PolicySpec(obs_dim=4, act_dim=2, hidden=(16,), discrete=True)
PENDULUM = PolicySpec(obs_dim=3, act_dim=1, hidden=(16,), discrete=False, activation="tanh")


def random_params(spec: PolicySpec, seed: int) -> np.ndarray:
    return 0.5 * np.random.default_rng(seed).standard_normal(spec.num_parameters())


def collect_iterations(env_id: str, spec: PolicySpec, workers: int, iterations: int = 3,
                       min_steps: int = 600) -> list:
    with RolloutPool(env_id, spec, seed=11, workers=workers) as pool:
        return [pool.collect(random_params(spec, i), min_steps) for i in range(iterations)]


def assert_same_batches(first: list, second: list) -> None:
    assert len(first) == len(second)
    for batch_a, batch_b in zip(first, second):
        assert [e.index for e in batch_a] == [e.index for e in batch_b]
        for a, b in zip(batch_a, batch_b):
            np.testing.assert_array_equal(a.observations, b.observations)
            np.testing.assert_array_equal(a.actions, b.actions)
            np.testing.assert_array_equal(a.rewards, b.rewards)
            np.testing.assert_array_equal(a.final_observation, b.final_observation)
            assert a.terminated == b.terminated


@pytest.mark.parametrize("env_id,spec", [("CartPole-v1", CARTPOLE), ("Pendulum-v1", PENDULUM)])
def test_batch_is_bit_identical_for_zero_one_and_two_workers(env_id, spec):
    in_process = collect_iterations(env_id, spec, workers=0)
    assert_same_batches(in_process, collect_iterations(env_id, spec, workers=1))
    assert_same_batches(in_process, collect_iterations(env_id, spec, workers=2))
    # the batches really are whole episodes holding at least min_steps, numbered on
    assert all(sum(len(e) for e in batch) >= 600 for batch in in_process)
    indices = [e.index for batch in in_process for e in batch]
    assert indices == list(range(len(indices)))


PENDULUM_NORM = PolicySpec(obs_dim=3, act_dim=1, hidden=(16,), discrete=False,
                           activation="tanh", obs_norm=True)


def normalised_params(spec: PolicySpec, seed: int) -> np.ndarray:
    """Random policy parameters, then a mean and a positive std for the normaliser."""
    rng = np.random.default_rng(seed)
    return np.concatenate([0.5 * rng.standard_normal(spec.num_policy_parameters()),
                           rng.standard_normal(spec.obs_dim),
                           rng.uniform(0.5, 2.0, spec.obs_dim)])


def test_normalising_batches_are_bit_identical_for_zero_one_and_two_workers():
    def collect(workers):
        with RolloutPool("Pendulum-v1", PENDULUM_NORM, seed=4, workers=workers) as pool:
            return [pool.collect(normalised_params(PENDULUM_NORM, i), 400) for i in range(2)]

    in_process = collect(0)
    assert_same_batches(in_process, collect(1))
    assert_same_batches(in_process, collect(2))


def test_running_mean_std_matches_numpy_on_the_whole_stream():
    rng = np.random.default_rng(0)
    # batches of very different sizes and scales, one of a single row
    batches = [rng.normal(loc, scale, (n, 3)) for loc, scale, n in
               ((5.0, 2.0, 7), (-3.0, 0.1, 1), (100.0, 30.0, 250), (0.0, 1.0, 64))]
    normalizer = RunningMeanStd(3)
    np.testing.assert_allclose(normalizer.normalize(np.ones((2, 3))), 1.0, rtol=1e-7)  # identity
    for i, batch in enumerate(batches):
        normalizer.update(batch)
        stream = np.concatenate(batches[:i + 1])
        assert normalizer.count == len(stream)
        np.testing.assert_allclose(normalizer.mean, stream.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(normalizer.var, stream.var(axis=0), rtol=1e-10)
    restored = RunningMeanStd.from_state(normalizer.state())
    assert restored.count == normalizer.count
    np.testing.assert_array_equal(restored.mean, normalizer.mean)
    np.testing.assert_array_equal(restored.var, normalizer.var)


def test_actor_normalises_raw_observations_with_the_shipped_statistics():
    flat = normalised_params(PENDULUM_NORM, 3)
    plain = Actor(PENDULUM, flat[:PENDULUM.num_parameters()])
    normalising = Actor(PENDULUM_NORM, flat)
    mean, std = flat[-6:-3], flat[-3:]
    obs = np.random.default_rng(1).normal(0.0, 3.0, (20, 3))
    obs[0] = mean + 50.0 * std  # far out: clipped at +10 standard deviations
    expected = np.clip((obs - mean) / std, -10.0, 10.0)
    np.testing.assert_allclose(normalising.output(obs), plain.output(expected), rtol=1e-12)
    assert not np.allclose(normalising.output(obs), plain.output(obs))
    assert PENDULUM_NORM.num_parameters() == PENDULUM.num_parameters() + 6


def test_making_halfcheetah_prints_no_settotalmass_warning_but_gym_make_does():
    pytest.importorskip("mujoco")
    script = ("import gymnasium as gym; from minimal.rl.envs import make; import sys; "
              "make('HalfCheetah-v5'); print('--', file=sys.stderr, flush=True); "
              "gym.make('HalfCheetah-v5')")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    ours, gyms = (result.stderr + result.stdout).split("--\n", 1)
    assert "settotalmass" not in ours
    assert "settotalmass" in gyms  # the warning is real: the test would see it


def test_quiet_settotalmass_forwards_every_other_warning_and_restores_the_handler():
    mujoco = pytest.importorskip("mujoco")
    from minimal.rl.envs import quiet_settotalmass

    seen: list[str] = []
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(seen.append)
    try:
        with quiet_settotalmass():
            handler = mujoco.get_mju_user_warning()
            handler("compiler attribute 'settotalmass' is deprecated and will be removed")
            handler("Nan, Inf or huge value in QACC at DOF 0")
        assert seen == ["Nan, Inf or huge value in QACC at DOF 0"]
        assert mujoco.get_mju_user_warning() is seen.append or \
            mujoco.get_mju_user_warning() == seen.append
    finally:
        mujoco.set_mju_user_warning(previous)


def test_episode_seeds_depend_on_seed_and_number_only():
    env_a, rng_a = episode_seeds(3, 7)
    env_b, rng_b = episode_seeds(3, 7)
    assert env_a == env_b and rng_a.random() == rng_b.random()
    assert episode_seeds(3, 8)[0] != env_a and episode_seeds(4, 7)[0] != env_a


def test_the_environment_seed_and_the_action_generator_are_separate_children():
    """As documented: SeedSequence([seed, k]).spawn(2), the first child seeding env.reset and
    the second the actions' generator (not one stream for both)."""
    env_seed, actions = episode_seeds(3, 7)
    first, second = np.random.SeedSequence([3, 7]).spawn(2)
    assert env_seed == int(first.generate_state(1)[0])
    assert actions.random() == np.random.default_rng(second).random()
    assert env_seed != int(second.generate_state(1)[0])


def test_gaussian_actions_come_from_the_episode_generator_not_the_action_space():
    import gymnasium as gym

    env = gym.make("Pendulum-v1")
    actor = Actor(PENDULUM, random_params(PENDULUM, 0))
    env.action_space.seed(1)
    first = run_episode(env, actor, seed=5, index=2)
    env.action_space.seed(999)  # would change the actions if action_space.sample() were used
    second = run_episode(env, actor, seed=5, index=2)
    np.testing.assert_array_equal(first.actions, second.actions)
    # actions are mean + std * N(0, 1) with that episode's generator (std = exp(log_std))
    _, rng = episode_seeds(5, 2)
    mean = actor.output(first.observations[0])
    np.testing.assert_allclose(first.actions[0], mean + actor.std * rng.standard_normal(1))


def test_categorical_actor_frequencies_follow_the_softmax():
    spec = PolicySpec(obs_dim=1, act_dim=3, hidden=(), discrete=True)
    actor = Actor(spec, np.array([0.0, 0.0, 0.0, 0.0, 1.0, 2.0]))  # weight (3,1), bias
    rng = np.random.default_rng(0)
    draws = np.array([actor.act(np.zeros(1), rng) for _ in range(20000)])
    probs = np.exp([0.0, 1.0, 2.0]) / np.exp([0.0, 1.0, 2.0]).sum()
    for k in range(3):
        frequency = np.mean(draws == k)
        assert abs(frequency - probs[k]) < 4 * np.sqrt(probs[k] * (1 - probs[k]) / 20000)


def test_episode_survives_packing_for_the_pipe():
    import gymnasium as gym

    episode = run_episode(gym.make("Pendulum-v1"), Actor(PENDULUM, random_params(PENDULUM, 1)),
                          0, 0)
    generation, unpacked = unpack_episode(pack_episode(episode, 4), PENDULUM)
    assert generation == 4 and unpacked.index == episode.index
    assert_same_batches([[episode]], [[unpacked]])


def test_actor_refuses_a_parameter_vector_of_the_wrong_size():
    with pytest.raises(ValueError, match="expected"):
        Actor(CARTPOLE, np.zeros(CARTPOLE.num_parameters() + 1))


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="activation must be 'relu' or 'tanh'"):
        PolicySpec(obs_dim=4, act_dim=2, activation="Tanh")


def test_negative_worker_count_is_refused():
    with pytest.raises(ValueError, match="workers must be >= 0"):
        RolloutPool("CartPole-v1", CARTPOLE, seed=0, workers=-1)


def test_killed_worker_raises_in_the_learner_within_seconds_and_the_rest_stop():
    pool = RolloutPool("CartPole-v1", CARTPOLE, seed=0, workers=2)
    pool.collect(random_params(CARTPOLE, 0), 200)
    processes = [worker.process for worker in pool.workers]
    os.kill(processes[0].pid, signal.SIGKILL)
    start = time.perf_counter()
    with pytest.raises(WorkerError, match="died"):
        pool.collect(random_params(CARTPOLE, 0), 10**9)  # would never end on its own
    assert time.perf_counter() - start < 5.0
    assert not any(process.is_alive() for process in processes)
    # going on with the broken pool: a clear error, not an AttributeError
    with pytest.raises(WorkerError, match=r"the pool stopped after a worker failure \(rollout "
                                          r"worker \d+ died .*\); make a new RolloutPool"):
        pool.collect(random_params(CARTPOLE, 0), 200)


@pytest.mark.parametrize("workers", [0, 1])
def test_collect_after_close_is_a_clear_error(workers):
    pool = RolloutPool("CartPole-v1", CARTPOLE, seed=0, workers=workers)
    pool.collect(random_params(CARTPOLE, 0), 50)
    pool.close()
    with pytest.raises(RuntimeError, match=r"RolloutPool\.collect: the pool was closed; make a "
                                           r"new RolloutPool"):
        pool.collect(random_params(CARTPOLE, 0), 50)


def test_nan_policy_parameters_are_refused_before_collecting():
    from minimal.errors import NonFiniteLossError
    with RolloutPool("CartPole-v1", CARTPOLE, seed=0, workers=0) as pool:
        params = random_params(CARTPOLE, 0)
        params[[7, 20]] = np.nan, np.inf
        with pytest.raises(NonFiniteLossError, match=r"hold 2 NaN or inf values \(the first "
                                                     r"at index 7\); nothing was collected"):
            pool.collect(params, 50)
        with pytest.raises(ValueError, match=r"expected \d+ parameters .* got shape \(3,\)"):
            pool.collect(np.zeros(3), 50)
        assert pool.next_index == 0
        assert len(pool.collect(random_params(CARTPOLE, 0), 50)) >= 1  # still usable


def test_worker_exception_is_reported_with_its_traceback():
    with (pytest.raises(WorkerError, match=r"NameNotFound|not found|doesn't exist"),
          RolloutPool("NoSuchEnv-v0", CARTPOLE, seed=0, workers=1) as pool):
        pool.collect(random_params(CARTPOLE, 0), 10)


def test_normal_exit_leaves_no_worker_processes():
    with RolloutPool("CartPole-v1", CARTPOLE, seed=0, workers=2) as pool:
        pool.collect(random_params(CARTPOLE, 0), 100)
        processes = [worker.process for worker in pool.workers]
    assert not any(process.is_alive() for process in processes)


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


LEARNER = textwrap.dedent("""
    import sys, numpy as np
    from minimal.rl.rollouts import PolicySpec, RolloutPool
    spec = PolicySpec(obs_dim=4, act_dim=2, hidden=(16,), discrete=True)
    if __name__ == "__main__":
        with RolloutPool("CartPole-v1", spec, seed=0, workers=2) as pool:
            pool.collect(np.zeros(spec.num_parameters()), 100)
            print(*[w.process.pid for w in pool.workers], flush=True)
            pool.collect(np.zeros(spec.num_parameters()), 10**9)  # until interrupted
""")


@pytest.mark.parametrize("how", ["ctrl-c", "learner killed"])
def test_interrupted_or_killed_learner_leaves_no_workers(tmp_path, how, interruptible):
    script = tmp_path / "learner.py"
    script.write_text(LEARNER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    learner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=interruptible)
    try:
        pids = [int(p) for p in learner.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
        learner.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
        learner.wait(timeout=10)
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in pids)
        if how == "ctrl-c":
            assert "KeyboardInterrupt" in learner.stderr.read()
    finally:
        learner.kill()
        learner.wait()


def test_large_parameter_vectors_and_surplus_episodes_do_not_deadlock():
    # 2 MB of parameters per message, larger than a pipe's buffer, sent while workers still
    # owe surplus episodes from the previous iteration
    spec = PolicySpec(obs_dim=4, act_dim=2, hidden=(512, 512), discrete=True)
    start = time.perf_counter()
    with RolloutPool("CartPole-v1", spec, seed=0, workers=2) as pool:
        for i in range(4):
            batch = pool.collect(0.05 * random_params(spec, i), 50)
            assert sum(len(e) for e in batch) >= 50
    assert time.perf_counter() - start < 60
