"""TRPO on the MuJoCo tasks: one (task, seed, settings) run per process, records kept on disk.

    python benchmarks/trpo_mujoco.py run --env HalfCheetah-v5 --seed 0 --tag preset \\
        [--steps 1000000] [--set obs_norm=True --set gae_lambda=0.95 ...] [--out /tmp/trpo_runs]
    python benchmarks/trpo_mujoco.py table --tag preset [--out /tmp/trpo_runs]
    python benchmarks/trpo_mujoco.py plot --tag preset --tag humanoid --png outputs/trpo/tasks.png
    python benchmarks/trpo_mujoco.py gif --tag preset --tag humanoid [--seed 0]
    python benchmarks/trpo_mujoco.py gallery --tag preset --out /tmp/trpo_runs

`run` trains with the demo's `--preset mujoco` settings (plus any --set overrides) and writes
TAG_ENV_sSEED.npz (the per-iteration records) and TAG_ENV_sSEED.policy.npz (the policy, its
observation normaliser included). Several runs go in separate processes (`nice -n 5`, at most
as many as there are cores), so a crash or a kill loses one run, not the set. `table` prints
the mean of the last 10 iterations' returns per run, the mean over seeds and the worst seed,
and the seconds per 10k steps split into collect and learn; `plot` draws every run's curve;
`gif` writes outputs/trpo/episode_ENV.gif from each saved policy of one seed; `gallery` writes
the README's pictures gallery/trpo_mujoco.png (the curves) and gallery/trpo_mujoco.gif
(HalfCheetah and Hopper side by side, every second frame of 200 steps, 16 colours: ~120 KB).
"""
from __future__ import annotations

import argparse
import ast
import glob
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from minimal.app import cli
from minimal.demos import trpo
from minimal.kernels.process import tune_process
from minimal.rl.render import greedy_return
from minimal.rl.rollouts import Actor

PUBLISHED = {"HalfCheetah-v5": 1290, "Swimmer-v5": 95, "Reacher-v5": -4.8, "Hopper-v5": 1910}


def run(args) -> None:
    overrides = {}
    for item in args.set:
        name, text = item.split("=", 1)
        try:
            overrides[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            overrides[name] = text
    # the preset's values, then the overrides, as `--preset mujoco --flag value` does (Hopper's
    # max_kl 0.02 comes with the preset's task_max_kl; --set task_max_kl=() drops it)
    config = cli.make_config(trpo.Config, trpo.MUJOCO, seed=args.seed, env_ids=(args.env,),
                             total_steps=args.steps, workers=args.workers, gif=False,
                             **overrides)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"{args.tag}_{args.env}_s{args.seed}")

    def save(records: dict) -> None:  # every iteration, atomically: a killed run keeps its curve
        np.savez(stem + ".tmp.npz", **{k: np.asarray(v, np.float64) for k, v in records.items()})
        os.replace(stem + ".tmp.npz", stem + ".npz")

    records, trained = trpo.train(config, args.env, args.steps, label=f"{args.tag} {args.env}",
                                  on_iteration=save)
    records["mean_action_return"] = np.array([greedy_return(
        args.env, Actor(trained.spec, trained.shipped), config.eval_episodes,
        seed=args.seed + 10**6)])  # the demo's deterministic evaluation, same seeds
    save(records)
    trpo.save_policy(stem + ".policy.npz", trained.spec, trained.shipped, trained.normalizer)
    print(f"{stem}: last-10 mean {records['mean_return'][-10:].mean():.2f}")


def load_runs(out: str, tag: str) -> dict[str, dict[int, dict]]:
    runs: dict[str, dict[int, dict]] = {}
    for path in sorted(glob.glob(os.path.join(out, f"{tag}_*_s*.npz"))):
        match = re.fullmatch(rf"{re.escape(tag)}_(.+)_s(\d+)\.npz", os.path.basename(path))
        if match is None:
            continue
        with np.load(path) as data:
            runs.setdefault(match[1], {})[int(match[2])] = {k: data[k] for k in data.files}
    return runs


def table(args) -> None:
    """Finished runs only (a run still going has no mean_action_return yet)."""
    for env_id, runs in load_runs(args.out, args.tag).items():
        seeds = {s: r for s, r in runs.items() if "mean_action_return" in r}
        if not seeds:
            continue
        finals = {s: r["mean_return"][-10:].mean() for s, r in sorted(seeds.items())}
        steps = {s: r["steps"][-1] for s, r in seeds.items()}
        collect = np.mean([r["collect_seconds"].sum() / r["steps"][-1] * 1e4
                           for r in seeds.values()])
        learn = np.mean([r["learn_seconds"].sum() / r["steps"][-1] * 1e4
                         for r in seeds.values()])
        cpu = ""
        if all("learn_cpu_seconds" in r for r in seeds.values()):
            cpu_c = np.mean([r["collect_cpu_seconds"].sum() / r["steps"][-1] * 1e4
                             for r in seeds.values()])
            cpu_l = np.mean([r["learn_cpu_seconds"].sum() / r["steps"][-1] * 1e4
                             for r in seeds.values()])
            cpu = f" | CPU s/10k collect {cpu_c:.2f} learn {cpu_l:.2f}"
        per_seed = " ".join(f"s{s} {v:.2f} ({steps[s] / 1e3:.0f}k)" for s, v in finals.items())
        values = np.array(list(finals.values()))
        greedy = np.array([r["mean_action_return"][0] for r in seeds.values()])
        greedy_text = (f" | mean action: mean {greedy.mean():.2f} sd {greedy.std():.2f} worst "
                       f"{greedy.min():.2f} ({' '.join(f'{v:.1f}' for v in greedy)})")
        print(f"{env_id:15s} {len(values)} seeds: mean {values.mean():9.2f}  sd "
              f"{values.std():7.2f}  worst {values.min():9.2f}  best {values.max():9.2f}  "
              f"published {PUBLISHED.get(env_id, float('nan'))}  | {per_seed}{greedy_text} | "
              f"s/10k collect {collect:.2f} learn {learn:.2f}{cpu}")


def plot(args) -> None:
    runs = {}
    for tag in args.tag:
        runs.update(load_runs(args.out, tag))
    trpo.plot_tasks(runs, args.png, trpo.PUBLISHED_1M)
    print(args.png)


def episode_gif(policy: str, env_id: str, target: str, seed: int, max_steps: int) -> None:
    """A GIF of one episode of a saved policy (its mean action) at `target`."""
    spec, shipped, normalizer = trpo.load_policy(policy)
    total = trpo.write_episode_gif(env_id, trpo.Trained(spec, shipped, normalizer), target,
                                   seed=seed, max_steps=max_steps)
    print(f"{target}: return {total:.1f} over at most {max_steps} steps")


def gif(args) -> None:
    """A GIF of one episode of each task's saved policy (the given seed)."""
    for tag in args.tag:
        for path in sorted(glob.glob(os.path.join(args.out, f"{tag}_*_s{args.seed}.policy.npz"))):
            env_id = os.path.basename(path)[len(tag) + 1:-len(f"_s{args.seed}.policy.npz")]
            episode_gif(path, env_id, os.path.join(args.gif_dir, f"episode_{env_id}.gif"),
                        args.seed, args.max_steps)


def gallery(args) -> None:
    """The README's MuJoCo pictures: gallery/trpo_mujoco.png (every seed's learning curve on
    every task of the tag) and gallery/trpo_mujoco.gif (one episode of each --gif-env's policy
    of --seed, side by side, enough frames kept that the gait reads)."""
    import tempfile
    from pathlib import Path

    from PIL import Image, ImageSequence

    import run_all

    runs = load_runs(args.out, args.tag)
    with tempfile.TemporaryDirectory() as folder:
        curves = Path(folder) / "tasks.png"
        trpo.plot_tasks(runs, str(curves), trpo.PUBLISHED_1M, wall_clock=False)
        run_all.gallery_image(curves, run_all.GALLERY / "trpo_mujoco.png")
        episodes = []
        for env_id in args.gif_env:
            path = Path(folder) / f"{env_id}.gif"
            episode_gif(os.path.join(args.out, f"{args.tag}_{env_id}_s{args.seed}.policy.npz"),
                        env_id, str(path), args.seed, args.max_steps)
            with Image.open(path) as image:
                duration = image.info.get("duration", 80)
                episodes.append([frame.convert("RGB") for frame in ImageSequence.Iterator(image)])
        count = min(len(frames) for frames in episodes)
        side = sum(frames[0].width for frames in episodes)
        joined = []
        for i in range(count):  # the episodes side by side, frame by frame
            canvas = Image.new("RGB", (side, episodes[0][0].height))
            left = 0
            for frames in episodes:
                canvas.paste(frames[i], (left, 0))
                left += frames[i].width
            joined.append(canvas)
        both = Path(folder) / "both.gif"
        joined[0].save(both, save_all=True, append_images=joined[1:], duration=duration, loop=0)
        run_all.gallery_image(both, run_all.GALLERY / "trpo_mujoco.gif",
                              gif_frames=args.gif_frames, gif_width=args.gif_width)
    for name in ("trpo_mujoco.png", "trpo_mujoco.gif"):
        print(run_all.GALLERY / name, (run_all.GALLERY / name).stat().st_size, "bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("--env", required=True)
    p_run.add_argument("--seed", type=int, default=0)
    p_run.add_argument("--steps", type=int, default=1_000_000)
    p_run.add_argument("--workers", type=int, default=0)
    p_run.add_argument("--tag", default="preset")
    p_run.add_argument("--set", action="append", default=[])
    for p in sub.choices.values():
        p.add_argument("--out", default="/tmp/trpo_runs")
    p_table = sub.add_parser("table")
    p_table.add_argument("--tag", default="preset")
    p_plot = sub.add_parser("plot")
    p_gif = sub.add_parser("gif")
    for p in (p_plot, p_gif):
        p.add_argument("--tag", action="append", required=True)
    p_gallery = sub.add_parser("gallery")
    p_gallery.add_argument("--tag", default="preset")
    p_gallery.add_argument("--gif-env", nargs="+", default=["HalfCheetah-v5", "Hopper-v5"])
    p_gallery.add_argument("--seed", type=int, default=0)
    p_gallery.add_argument("--max-steps", type=int, default=200)
    p_gallery.add_argument("--gif-width", type=int, default=256, help="pixels, both panels")
    p_gallery.add_argument("--gif-frames", type=int, default=26, help="at most, evenly spaced")
    for p in (p_table, p_plot, p_gif, p_gallery):
        p.add_argument("--out", default="/tmp/trpo_runs")
    p_plot.add_argument("--png", default="outputs/trpo/mujoco_curves.png")
    p_gif.add_argument("--seed", type=int, default=0)
    p_gif.add_argument("--max-steps", type=int, default=300)
    p_gif.add_argument("--gif-dir", default="outputs/trpo")
    args = parser.parse_args()
    {"run": run, "table": table, "plot": plot, "gif": gif, "gallery": gallery}[args.command](args)


if __name__ == "__main__":
    tune_process()  # the entry points' process settings: minimal/kernels/process.py
    main()
