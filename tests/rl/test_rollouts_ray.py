"""Rollouts on Ray actors: the same batches as the process pool, failures, and a clean exit.

One local Ray instance serves the module (starting one takes 5-10 s here); it is started by a
RayRolloutPool, so the module's teardown checks that closing the pool that started Ray leaves
none of Ray's processes behind. A second instance is started by a learner in a subprocess, to
be interrupted like Ctrl-C in a terminal.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from test_rollouts import alive, assert_same_batches, random_params  # the pool tests' own

from minimal.app import cli
from minimal.errors import ConfigError
from minimal.rl.rollouts import PolicySpec, RolloutPool, WorkerError

ROOT = Path(__file__).resolve().parents[2]
CARTPOLE = PolicySpec(obs_dim=4, act_dim=2, hidden=(16,), discrete=True)
PENDULUM = PolicySpec(obs_dim=3, act_dim=1, hidden=(16,), discrete=False, activation="tanh")


def collect_iterations(pool, spec: PolicySpec, iterations: int = 3,
                       min_steps: int = 600) -> list:
    with pool:
        return [pool.collect(random_params(spec, i), min_steps) for i in range(iterations)]


def ray_processes(root: int) -> dict[int, str]:
    """Ray's processes among the descendants of `root`: pid -> command line."""
    import ray

    ray_dir = os.path.dirname(ray.__file__)
    parents, commands = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().split(") ")[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    commands[int(entry)] = cmdline.read().replace(b"\0", b" ").decode()
            except (OSError, IndexError):
                continue
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = commands.get(pid, "")
                frontier.append(pid)
    # Ray's binaries and scripts live in its package directory; its workers rename themselves
    # "ray::..." (the learner's forkserver has Ray's directory on its sys.path, not as a program)
    return {pid: command for pid, command in found.items()
            if command.startswith("ray::")
            or any(word.startswith(ray_dir) for word in command.split()[:3])}


def wait_until_gone(pids, seconds: float = 20.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [pid for pid in pids if alive(pid)]


# ===== without Ray =========================================================================


def test_without_ray_the_backend_fails_at_once_with_how_to_install(monkeypatch, capsys):
    from minimal.demos import trpo
    from minimal.rl.rollouts.ray_actors import RayRolloutPool

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ConfigError, match=r"needs Ray.*pip install -e \.\[ray\]"):
        RayRolloutPool("CartPole-v1", CARTPOLE, seed=0, workers=1)
    with pytest.raises(ConfigError, match=r"pip install -e \.\[ray\]"):
        cli.make_config(trpo.Config, None, backend="ray")
    # the command line: a usage error (exit 2) before anything is trained
    with pytest.raises(SystemExit) as exit_info:
        cli.main("minimal.demos.trpo", ["--backend", "ray", "--out-dir", "/nonexistent/x"])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "pip install -e .[ray]" in message and "Traceback" not in message


def test_backend_settings_are_checked():
    from minimal.demos import trpo

    with pytest.raises(ConfigError, match=r"\(--backend\) must be one of process, ray, got 'dask'"):
        cli.make_config(trpo.Config, None, backend="dask")
    with pytest.raises(ConfigError, match="--ray-address needs --backend ray"):
        cli.make_config(trpo.Config, None, ray_address="head:6379")


def test_an_address_where_no_cluster_listens_is_refused_at_once():
    import socket

    from minimal.rl.rollouts.ray_actors import check_reachable

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"--ray-address 127.0.0.1:{port}: no Ray cluster "
                                          r"answers there .*ray start --head"):
        check_reachable(f"127.0.0.1:{port}")
    assert time.perf_counter() - start < 10.0  # Ray itself would retry for ever


# ===== on a local Ray instance ==============================================================


LEARNER = textwrap.dedent("""
    import sys
    import numpy as np
    from minimal.rl.rollouts import PolicySpec
    from minimal.rl.rollouts.ray_actors import RayRolloutPool
    spec = PolicySpec(obs_dim=4, act_dim=2, hidden=(16,), discrete=True)
    with RayRolloutPool("CartPole-v1", spec, seed=0, workers=2) as pool:
        pool.collect(np.zeros(spec.num_parameters()), 100)
        print(*[w.pid for w in pool.workers], flush=True)
        sys.stdin.readline()  # idle until the test is ready to interrupt
        pool.collect(np.zeros(spec.num_parameters()), 10**9)  # until interrupted
""")


@pytest.fixture(scope="module")
def learner_with_ray(tmp_path_factory, interruptible):
    """A learner in a subprocess with a local Ray instance of its own, started first so that
    its Ray starts while the module's does (most of a start is waiting, not computing)."""
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e .[ray])")
    script = tmp_path_factory.mktemp("learner") / "learner.py"
    script.write_text(LEARNER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # its own process group, as a terminal's foreground job: Ctrl-C signals the whole group
    learner = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, start_new_session=True, preexec_fn=interruptible)
    yield learner
    learner.kill()
    learner.wait()


@pytest.fixture(scope="module")
def ray_instance(learner_with_ray):
    """A local Ray instance started by a pool (3 CPUs: room for 2 more actors at a time)."""
    import ray

    from minimal.rl.rollouts.ray_actors import RayRolloutPool

    assert not ray.is_initialized()
    owner = RayRolloutPool("CartPole-v1", CARTPOLE, seed=0, workers=1, num_cpus=3)
    assert owner.owns_ray
    yield owner
    started = ray_processes(os.getpid())
    assert any("raylet" in command for command in started.values()), started
    owner.close()
    assert not ray.is_initialized()
    left = wait_until_gone(started)
    assert not left, f"Ray processes left after the pool that started Ray closed: " \
                     f"{ {pid: started[pid] for pid in left} }"


@pytest.mark.parametrize("env_id,spec", [("CartPole-v1", CARTPOLE), ("Pendulum-v1", PENDULUM)])
def test_ray_batches_are_bit_identical_to_the_process_pool_and_in_process(ray_instance,
                                                                         env_id, spec):
    from minimal.rl.rollouts.ray_actors import RayRolloutPool

    in_process = collect_iterations(RolloutPool(env_id, spec, seed=11, workers=0), spec)
    processes = collect_iterations(RolloutPool(env_id, spec, seed=11, workers=2), spec)
    assert_same_batches(in_process, processes)
    for actors in (1, 2):
        pool = RayRolloutPool(env_id, spec, seed=11, workers=actors)
        assert not pool.owns_ray  # joined the module's instance
        assert_same_batches(in_process, collect_iterations(pool, spec))
    assert all(sum(len(e) for e in batch) >= 600 for batch in in_process)


def test_trpo_learns_the_same_with_ray_actors(ray_instance):
    from minimal.demos import trpo

    def returns(backend: str) -> np.ndarray:
        # with the observation normaliser, which travels in the parameter vector
        config = cli.make_config(trpo.Config, None, backend=backend, workers=2,
                                 steps_per_update=1000, hidden=(16,), obs_norm=True)
        records, trained = trpo.train(config, "CartPole-v1", 3000)
        assert trained.spec.obs_norm
        return np.append(records["mean_return"], trained.shipped)

    np.testing.assert_array_equal(returns("process"), returns("ray"))


def test_killed_actor_raises_worker_error_within_seconds_and_the_rest_stop(ray_instance):
    from minimal.rl.rollouts.ray_actors import RayRolloutPool

    pool = RayRolloutPool("CartPole-v1", CARTPOLE, seed=0, workers=2)
    pool.collect(random_params(CARTPOLE, 0), 200)
    pids = [worker.pid for worker in pool.workers]
    assert all(alive(pid) for pid in pids)
    os.kill(pids[0], signal.SIGKILL)
    start = time.perf_counter()
    with pytest.raises(WorkerError, match=rf"rollout worker {pids[0]} \(Ray actor on .*\) died"):
        pool.collect(random_params(CARTPOLE, 0), 10**9)  # would never end on its own
    assert time.perf_counter() - start < 30.0  # about a second; generous for a busy machine
    assert not wait_until_gone(pids)
    with pytest.raises(WorkerError, match=r"the pool stopped after a worker failure \(rollout "
                                          r"worker \d+ .*died .*\); make a new RayRolloutPool"):
        pool.collect(random_params(CARTPOLE, 0), 200)


def test_more_actors_than_the_cluster_can_place_is_an_error_not_a_hang(ray_instance):
    from minimal.rl.rollouts.ray_actors import RayRolloutPool

    # the instance has 3 CPUs, 1 taken by the module's pool: 2 actors of 2 CPUs never fit
    with pytest.raises(WorkerError, match=r"2 actors of 2 CPU each did not start within 2 s; "
                                          r".*Ask for fewer workers or add nodes"):
        RayRolloutPool("CartPole-v1", CARTPOLE, seed=0, workers=2, actor_cpus=2,
                       start_timeout=2)
    # their CPUs were never taken, and the queued actors are gone: a pool that fits still starts
    with RayRolloutPool("CartPole-v1", CARTPOLE, seed=0, workers=2) as pool:
        assert len(pool.collect(random_params(CARTPOLE, 0), 50)) >= 1


def test_environment_raising_in_an_actor_is_the_same_worker_error_as_in_a_process(
        ray_instance):
    from minimal.rl.rollouts.ray_actors import RayRolloutPool

    # Pendulum's step computes 3 * g / (2 * l): with g a string it raises a TypeError inside
    # the worker, in the middle of an episode
    messages = []
    for make in (RolloutPool, RayRolloutPool):
        pool = make("Pendulum-v1", PENDULUM, seed=0, workers=1, env_kwargs={"g": "x"})
        with pytest.raises(WorkerError, match=r"rollout worker \d+.* raised:\nTraceback") as info:
            pool.collect(random_params(PENDULUM, 0), 100)
        pool.close()
        messages.append(str(info.value))
    for message in messages:  # the worker's own traceback: where in the environment, and why
        assert "pendulum.py" in message and "TypeError" in message.splitlines()[-1]
    # the same traceback from the same code, whichever the backend
    assert messages[0].split("Traceback")[1].splitlines()[-1] == \
        messages[1].split("Traceback")[1].splitlines()[-1]



def test_ctrl_c_shuts_the_local_ray_instance_down_leaving_no_processes(learner_with_ray):
    learner = learner_with_ray
    actors = [int(pid) for pid in learner.stdout.readline().split()]
    assert len(actors) == 2, learner.stderr.read()
    started = ray_processes(learner.pid)
    assert set(actors) <= set(started)
    assert any("raylet" in command for command in started.values())
    assert any("gcs_server" in command for command in started.values())
    learner.stdin.write("collect\n")
    learner.stdin.flush()
    time.sleep(1.0)  # into the endless collect, the actors busy
    os.killpg(learner.pid, signal.SIGINT)
    learner.wait(timeout=60)
    left = wait_until_gone(started)
    assert not left, {pid: started[pid] for pid in left}
    assert "KeyboardInterrupt" in learner.stderr.read()
