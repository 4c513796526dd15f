"""Rollout workers as processes on this machine: the transport of protocol.py over pipes.

Start method: 'forkserver' by default, for three reasons. 'fork' copies the learner as it is,
BLAS thread pools and locks included (a known source of deadlocks; Python 3.12 warns about it),
and every forked worker inherits the other workers' pipe ends, so a worker would not see the
learner's end close. 'spawn' is safe but imports NumPy and gymnasium (MuJoCo too) afresh in
every worker, about a second each. 'forkserver' imports them once in a clean server process
(`set_forkserver_preload`) and forks workers from it.

Failure and exit: the learner never blocks without a timeout; it waits on the pipes with
`multiprocessing.connection.wait(..., timeout)` and checks the workers' exit codes between
waits, so a worker that dies (killed, or an exception, whose traceback it sends back) raises
`WorkerError` in the learner within a second. Workers ignore SIGINT: Ctrl-C raises
KeyboardInterrupt in the learner only, whose `with RolloutPool(...)` block (or, failing that, an
atexit hook) stops, joins and if need be terminates them, so no process is left behind.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import sys
import time
import warnings
import weakref
from dataclasses import dataclass
from multiprocessing.connection import wait

import numpy as np

from minimal.rl.rollouts.protocol import (
    STOP,
    STOP_MESSAGE,
    Collector,
    Episode,
    EpisodeRunner,
    PolicySpec,
    Worker,
    unpack_episode,
)

# A forkserver worker re-runs the learner's main module by name although the server has
# preloaded it (see _modules_to_preload); runpy warns about exactly that, harmlessly.
warnings.filterwarnings("ignore", message=r"'.*' found in sys\.modules after import of package",
                        category=RuntimeWarning)


def _worker_main(conn, env_id: str, env_kwargs: dict, spec: PolicySpec, seed: int) -> None:
    """A worker process: answer the learner's messages until it says stop or goes away. A
    failure is sent back as text (b"E" + traceback), and the worker then exits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the learner's to handle
    runner = EpisodeRunner(env_id, env_kwargs, spec, seed)
    reply = b"E" + runner.error.encode() if runner.error is not None else b""
    while not reply.startswith(b"E"):  # an environment that could not be made: said at once
        try:
            payload = conn.recv_bytes()
        except EOFError:  # the learner is gone
            return
        if np.frombuffer(payload[:8], dtype=np.float64)[0] == STOP:
            return
        reply = runner.handle(payload)
        if reply and not reply.startswith(b"E"):
            conn.send_bytes(reply)
    try:
        conn.send_bytes(reply)
    except OSError:
        pass
    raise SystemExit(1)


@dataclass
class _Process(Worker):
    process: mp.process.BaseProcess | None = None
    conn: object = None


class RolloutPool(Collector):
    """Collects batches of whole episodes with `workers` processes (0: in this process).

        with RolloutPool("CartPole-v1", spec, seed=0, workers=2) as pool:
            episodes = pool.collect(flat_params, min_steps=5000)
    """

    def __init__(self, env_id: str, spec: PolicySpec, seed: int, workers: int = 1,
                 env_kwargs: dict | None = None, start_method: str = "forkserver",
                 poll_seconds: float = 0.5, queue_depth: int = 2):
        if workers < 0:
            raise ValueError(f"RolloutPool: workers must be >= 0, got {workers}")
        super().__init__(env_id, spec, seed, in_process=workers == 0, env_kwargs=env_kwargs,
                         poll_seconds=poll_seconds, queue_depth=queue_depth)
        # a pool that is never closed is still cleaned up when it is garbage-collected or, at
        # the latest, when the interpreter exits (weakref.finalize registers an atexit hook)
        self._finalizer = weakref.finalize(self, _shutdown, self.workers)
        if workers:
            context = mp.get_context(start_method)
            if start_method == "forkserver":
                context.set_forkserver_preload(_modules_to_preload())
            try:
                for _ in range(workers):
                    learner_end, worker_end = context.Pipe(duplex=True)
                    process = context.Process(
                        target=_worker_main, daemon=True,
                        args=(worker_end, env_id, self.env_kwargs, spec, seed))
                    process.start()
                    worker_end.close()  # only the worker holds it now: its death gives EOF
                    self.workers.append(_Process(process=process, conn=learner_end))
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        """Stop the workers: ask, wait a second, then terminate; close the pipes."""
        super().close()
        _shutdown(self.workers)

    def send(self, worker: _Process, payload: bytes) -> None:
        try:
            worker.conn.send_bytes(payload)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self._raise_dead(worker)

    def receive(self) -> tuple[int, Episode, _Process]:
        """The next reply from any worker; raises WorkerError if one has died."""
        by_conn = {worker.conn: worker for worker in self.workers}
        while True:
            ready = wait(list(by_conn), timeout=self.poll_seconds)
            for conn in ready:
                worker = by_conn[conn]
                try:
                    payload = conn.recv_bytes()
                except (EOFError, OSError):
                    self._raise_dead(worker)
                if payload[:1] == b"E":
                    self.fail(f"rollout worker {worker.process.pid} raised:\n"
                              f"{payload[1:].decode()}")
                generation, episode = unpack_episode(payload[1:], self.spec)
                return generation, episode, worker
            for worker in self.workers:  # nothing arrived: is everybody still alive?
                if worker.process.exitcode is not None:
                    self._raise_dead(worker)

    def _raise_dead(self, worker: _Process) -> None:
        worker.process.join(timeout=1.0)
        self.fail(f"rollout worker {worker.process.pid} died (exit code "
                  f"{worker.process.exitcode}); stopping the other workers")


def _modules_to_preload() -> list[str]:
    """What the fork server imports once, so that each worker forked from it need not.

    Like 'spawn', a forkserver child re-runs the learner's main module (as __mp_main__). For a
    demo started with `python -m minimal.demos.trpo` that means importing matplotlib, scipy and
    the rest again in every worker (measured: a 20-25 s first collect on this loaded machine).
    Preloading that module by name in the server leaves the children only its body to re-run.
    (A plain script cannot be preloaded this way in Python 3.11: the server never receives the
    script's path, so '__main__' in the preload list is ignored.)
    """
    modules = ["minimal.rl.rollouts.processes"]
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and not spec.name.endswith("__main__"):
        modules.append(spec.name)
    return modules


def _shutdown(workers: list[_Process]) -> None:
    """Ask each worker to stop, give it a second, then terminate (and if need be kill) it."""
    for worker in workers:
        try:
            worker.conn.send_bytes(STOP_MESSAGE)
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + 1.0
    for worker in workers:
        worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.terminate()
            worker.process.join(timeout=1.0)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=1.0)
        try:
            worker.conn.close()
        except OSError:
            pass
    workers.clear()
