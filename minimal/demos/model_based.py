"""Model-based RL: a learned table model, Dyna-Q, Monte-Carlo search, MCTS and Dyna-2.

Follows the post on integrating learning and planning (Sutton & Barto chapter 8, David Silver's
lecture 8). The agent learns a model of the environment from its own experience and then
*plans*: it learns from experience that the model imagines, which is far cheaper than the real
thing. The file runs past 600 lines because it holds the post's five pieces side by side (the
table model, Dyna-Q, Monte-Carlo search, MCTS, Dyna-2), each short, with an experiment each.

Key equations. The model is a table of counts, learned by supervised "learning" in its simplest
form::

    P_hat(s' | s, a) = N(s, a, s') / N(s, a)        R_hat(s, a, s') = mean reward seen there

Planning in it by Bellman optimality backups gives Q* of the model (`optimal_action_values`;
dynamic_programming.py's `value_iteration` computes v* the same way). Dyna-Q (Sutton & Barto
8.2) interleaves, at every real step::

    act epsilon-greedily; Q-learning update from the real transition; update the model;
    n times: pick a (s, a) seen before, imagine (r, s') from the model, Q-learning update

Simulation-based search plans only for the state the agent is in::

    Monte-Carlo search   for each action: K simulated episodes (action first, then a random
                         rollout policy); act on the best mean return
    MCTS (UCT)           simulate from the current state, choosing actions inside the search
                         tree by Q(s, a) + c * sqrt(ln N(s) / N(s, a)), then a random rollout;
                         add one state to the tree per simulation; back up mean returns
    Dyna-2               long-term memory Q_long learned by SARSA from real experience; short-term
                         memory Q_short learned by TD search (SARSA on simulated episodes from the
                         current state, on the error of Q_long + Q_short); act on their sum

Run:  python -m minimal.demos.model_based [--quick] [--seed 0]

Figures (in out_dir):
    table_model.png       FrozenLake-v1 (stochastic): the learned model's error against the true
                          table shrinks like 1/sqrt(experience), and planning in the learned
                          model finds a policy whose *true* value approaches the optimum
    dyna_maze.png         figure 8.2: steps per episode on the Dyna maze for n = 0, 5, 50 planning
                          steps, the greedy policy each has after 2 episodes (like figure 8.3:
                          planning spreads the goal's value backwards), and the episodes each
                          needs until its greedy path is (within 2 steps of) the 14-step shortest
    search.png            steps to reach the goal of the maze when every real step is chosen by
                          Monte-Carlo search or MCTS in a learned model, against the simulation
                          budget per step (14 is optimal)
    dyna2.png             steps per episode for SARSA alone (long-term memory), Dyna-Q and Dyna-2

Settings that matter: the planning budget n; UCT's c against the scale of the returns (here in
[0, 1]); the rollout depth against the distance to the goal. The defaults average 30 runs.

Departures: Dyna-Q's planning picks a previously seen (state, action) pair uniformly (the book
picks a seen state, then one of its tried actions). The search tree of MCTS is a table over
states (Silver's "table lookup" search tree), rebuilt at every real step. The search methods plan
in a model learned by exploring (the least-tried action in each state), and treat a (state,
action) the model has never seen as "stay put, reward 0".

Results (seed 0, 2 cores):

    measure                                         quick (~20 s)   full (30 runs)
    episodes until the greedy path takes <= 16      23.2 / 4 / 2    23.8 / 4.5 / 2.9 (book ~3)
      steps, with n = 0 / 5 / 50
    FrozenLake: model error; plan value / optimum   0.072; 93%      0.036; 99% (30000 steps)
    maze steps to the goal, best budget: MC / MCTS  40 / 36.5       44 / 22 (300 simulations)
    Dyna-2 speed-up over SARSA, episodes 2-10       4.0x            5.6x

MCTS keeps improving with the budget (its tree grows); flat Monte-Carlo search is stuck with its
random rollout policy.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import gymnasium as gym
import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from minimal.app import cli, viz
from minimal.rl import envs
from minimal.rl.tabular import epsilon_greedy, greedy_action, greedy_path

matplotlib.use("Agg")  # figures go to files; no display needed


@dataclass
class Config:
    seed: int = 0  # seed for every random number in the run
    model_steps: tuple = (100, 300, 1000, 3000, 10000, 30000)  # FrozenLake experience sizes
    model_runs: int = 10  # runs averaged for the learned-model curves
    dyna_runs: int = 30  # runs averaged on the Dyna maze (the book uses 30)
    dyna_episodes: int = 50  # episodes per run (figure 8.2)
    planning_steps: tuple = (0, 5, 50)  # Dyna-Q's planning updates per real step
    path_slack: int = 2  # a greedy path this close to the shortest (14) counts as found
    alpha: float = 0.1  # step size of every table update
    gamma: float = 0.95  # discount on the maze
    epsilon: float = 0.1  # exploration while acting
    explore_steps: int = 2000  # exploring steps that teach the search methods their model
    search_budgets: tuple = (10, 30, 100, 300)  # simulations per real step for MC search / MCTS
    search_episodes: int = 5  # real episodes played with each search method and budget
    rollout_depth: int = 40  # longest simulated episode
    uct_c: float = 0.2  # exploration constant of UCT (returns here lie in [0, 1])
    max_real_steps: int = 200  # a searching agent that hasn't arrived by then gives up
    dyna2_simulations: int = 5  # TD-search episodes per real step in Dyna-2
    dyna2_runs: int = 10  # runs averaged for the Dyna-2 comparison
    dyna2_episodes: int = 30  # episodes per Dyna-2 run
    out_dir: str = "outputs/model_based"  # where figures are written

    def __post_init__(self):
        cli.validate(self, whole=("seed", "planning_steps", "path_slack"),
                     counts=("model_steps", "model_runs", "dyna_runs", "dyna_episodes",
                             "explore_steps", "search_budgets", "search_episodes",
                             "rollout_depth", "max_real_steps", "dyna2_simulations",
                             "dyna2_runs", "dyna2_episodes"),
                     nonempty=("model_steps", "planning_steps", "search_budgets"),
                     positive=("alpha",), non_negative=("uct_c",),
                     fractions=("alpha", "gamma", "epsilon"))


QUICK = {"model_steps": (100, 300, 1000, 3000, 10000), "model_runs": 3, "dyna_runs": 5,
         "search_budgets": (10, 100), "search_episodes": 2, "dyna2_runs": 3,
         "dyna2_episodes": 15}

TARGETS = {
    "episodes_to_shortest_n50": ("<=", 4.0),  # Dyna-Q with 50 planning steps (book: ~3)
    "episodes_to_shortest_n0": (">=", 12.0),  # without planning it takes many more
    "planning_speedup": (">=", 3.0),  # episodes needed with n = 0 / with n = 50
    "learned_plan_value_ratio": (">=", 0.9),  # FrozenLake: plan in the learned model / optimum
    "mcts_steps_best_budget": ("<=", 45.0),  # MCTS steps to the goal (random play: hundreds)
    "dyna2_early_speedup": (">=", 1.5),  # SARSA's steps over episodes 2-10 / Dyna-2's
}


# --- the model -----------------------------------------------------------------------------
class TableModel:
    """Counts of what followed each (state, action): a maximum-likelihood table model."""

    def __init__(self, n_states: int, n_actions: int):
        self.n_states, self.n_actions = n_states, n_actions
        # outcomes[s][a] = {next_state: [count, reward_sum, terminated_count]}
        self.outcomes: list[list[dict[int, list[float]]]] = [
            [{} for _ in range(n_actions)] for _ in range(n_states)]
        self.seen_pairs: list[tuple[int, int]] = []  # each (s, a) once, in order of first visit
        # (reward, next_state, terminated) of pairs with a single outcome so far: a shortcut
        # for sample(), which search calls hundreds of thousands of times.
        self.only_outcome: dict[tuple[int, int], tuple[float, int, bool]] = {}

    def update(self, state: int, action: int, reward: float, next_state: int,
               terminated: bool) -> None:
        table = self.outcomes[state][action]
        if not table:
            self.seen_pairs.append((state, action))
        count = table.setdefault(next_state, [0, 0.0, 0])
        count[0] += 1
        count[1] += reward
        count[2] += terminated
        if len(table) == 1:
            self.only_outcome[state, action] = (count[1] / count[0], next_state,
                                                count[2] * 2 > count[0])
        else:
            self.only_outcome.pop((state, action), None)

    def known(self, state: int, action: int) -> bool:
        return bool(self.outcomes[state][action])

    def sample(self, state: int, action: int, rng: np.random.Generator
               ) -> tuple[float, int, bool]:
        """Imagine one transition: s' in proportion to its count, its mean reward."""
        outcome = self.only_outcome.get((state, action))
        if outcome is not None:  # deterministic so far: no random number needed
            return outcome
        table = self.outcomes[state][action]
        if not table:
            return 0.0, state, False  # never tried: assume nothing happens
        total = sum(entry[0] for entry in table.values())
        pick = rng.random() * total
        for next_state, (count, reward_sum, done) in table.items():  # noqa: B007 (the pick)
            pick -= count
            if pick < 0:
                break
        return reward_sum / count, next_state, done * 2 > count

    def transition_table(self) -> envs.TransitionTable:
        """The model as a gymnasium-style table P[s][a] (unknown pairs: stay put)."""
        P: envs.TransitionTable = {}
        for state in range(self.n_states):
            P[state] = {}
            for action in range(self.n_actions):
                table = self.outcomes[state][action]
                total = sum(entry[0] for entry in table.values())
                P[state][action] = [(count / total, s2, reward_sum / count, done * 2 > count)
                                    for s2, (count, reward_sum, done) in table.items()] \
                    or [(1.0, state, 0.0, False)]
        return P


def optimal_action_values(P: envs.TransitionTable, gamma: float, theta: float = 1e-8
                          ) -> np.ndarray:
    """Q* of a table by repeated Bellman optimality backups (as in dynamic_programming.py)."""
    probs, rewards, continues = envs.transition_arrays(P)
    q = np.zeros(rewards.shape)
    for _ in range(100_000):
        new_q = rewards + gamma * np.einsum("sat,sat,t->sa", probs, continues, q.max(axis=1))
        if np.max(np.abs(new_q - q)) < theta:
            return new_q
        q = new_q
    return q


def policy_values(P: envs.TransitionTable, policy: np.ndarray, gamma: float) -> np.ndarray:
    """Exact v of a deterministic policy: solve v = r + gamma P v."""
    probs, rewards, continues = envs.transition_arrays(P)
    rows = np.arange(len(P))
    transition = probs[rows, policy] * continues[rows, policy]
    return np.linalg.solve(np.eye(len(P)) - gamma * transition, rewards[rows, policy])


def learned_model_experiment(config: Config, rng: np.random.Generator) -> dict:
    """FrozenLake: learn the table from random play, plan in it, score the plan in reality."""
    lake = gym.make("FrozenLake-v1", max_episode_steps=10_000)
    true_P = lake.unwrapped.P
    true_probs, _, _ = envs.transition_arrays(true_P)
    live = true_probs.max(axis=2) < 1.0  # (s, a) pairs that can lead to more than one state
    # gamma 0.99 (not 1): a policy planned in a poor model may never finish an episode.
    gamma = 0.99
    optimum = optimal_action_values(true_P, gamma).max(axis=1)[0]
    errors = np.zeros((config.model_runs, len(config.model_steps)))
    success = np.zeros_like(errors)
    progress = cli.Progress(config.model_runs, label="model run")
    for run in range(config.model_runs):
        model = TableModel(16, 4)
        state, _ = lake.reset(seed=config.seed + run)
        taken = 0
        for column, steps in enumerate(config.model_steps):
            for _ in range(steps - taken):
                action = int(rng.integers(4))
                next_state, reward, terminated, truncated, _ = lake.step(action)
                model.update(state, action, reward, next_state, terminated)
                state = lake.reset()[0] if terminated or truncated else next_state
            taken = steps
            learned_P = model.transition_table()
            learned_probs, _, _ = envs.transition_arrays(learned_P)
            # Total variation distance per (s, a), averaged over the live pairs.
            errors[run, column] = 0.5 * np.abs(learned_probs - true_probs).sum(axis=2)[live].mean()
            plan = optimal_action_values(learned_P, gamma).argmax(axis=1)
            success[run, column] = policy_values(true_P, plan, gamma)[0]
        progress.update(run + 1)
    return {"steps": np.array(config.model_steps), "errors": errors.mean(axis=0),
            "success": success.mean(axis=0), "optimum": optimum}


# --- Dyna-Q --------------------------------------------------------------------------------
def dyna_q(env: envs.DynaMaze, episodes: int, planning_steps: int, config: Config,
           rng: np.random.Generator, seed: int) -> tuple[np.ndarray, np.ndarray, list]:
    """Tabular Dyna-Q. Returns steps per episode, the length of the greedy path after each
    episode (inf while it doesn't reach the goal), and Q after the second episode."""
    q = np.zeros((env.n_states, env.n_actions))
    model = TableModel(env.n_states, env.n_actions)
    steps, greedy_steps = np.zeros(episodes), np.zeros(episodes)
    q_after_two = q.copy()
    start = int(np.argmax(env.start_distribution))
    state, _ = env.reset(seed=seed)
    for episode in range(episodes):
        terminated = False
        while not terminated:
            action = epsilon_greedy(q[state], config.epsilon, rng)
            next_state, reward, terminated, _, _ = env.step(action)
            q_learning_update(q, state, action, reward, next_state, terminated, config)
            model.update(state, action, reward, next_state, terminated)
            # Learn from imagined experience: (s, a) pairs seen before, outcomes from the model.
            picks = rng.integers(len(model.seen_pairs), size=planning_steps).tolist()
            for s, a in (model.seen_pairs[pick] for pick in picks):
                r, s2, done = model.sample(s, a, rng)
                q_learning_update(q, s, a, r, s2, done, config)
            state = next_state
            steps[episode] += 1
        if episode == 1:  # figure 8.3: how far the goal's value has spread after 2 episodes
            q_after_two = q.copy()
        path, reached = greedy_path(env.P, q, start)
        greedy_steps[episode] = len(path) - 1 if reached else np.inf
        state, _ = env.reset()
    return steps, greedy_steps, q_after_two


def q_learning_update(q: np.ndarray, state: int, action: int, reward: float, next_state: int,
                      terminated: bool, config: Config) -> None:
    best_next = max(q[next_state].tolist())  # Python's max: NumPy's is slower on 4 numbers
    target = reward + config.gamma * (not terminated) * best_next
    q[state, action] += config.alpha * (target - q[state, action])


def episodes_to_shortest(greedy_steps: np.ndarray, slack: int) -> int:
    """The first episode (counting from 1) after which the greedy path is within `slack` steps
    of the shortest; one more than the number of episodes if that never happens.

    Why a slack: the exact 14-step path may need a move the agent has never tried. Its value
    stays at the initial 0, planning can't invent it (the model only knows what was seen), and
    only epsilon's random moves will find it: the gap Dyna-Q+'s exploration bonus closes.
    """
    hits = np.flatnonzero(greedy_steps <= envs.DynaMaze.SHORTEST_PATH + slack)
    return int(hits[0]) + 1 if len(hits) else len(greedy_steps) + 1


def dyna_experiment(config: Config, rng: np.random.Generator) -> dict:
    env = envs.DynaMaze()
    results = {}
    for n in config.planning_steps:
        steps, needed, q_in_second = [], [], None
        progress = cli.Progress(config.dyna_runs, label=f"Dyna-Q n={n} run")
        for run in range(config.dyna_runs):
            run_steps, greedy_steps, q_early = dyna_q(env, config.dyna_episodes, n, config,
                                                        rng, seed=config.seed + run)
            steps.append(run_steps)
            needed.append(episodes_to_shortest(greedy_steps, config.path_slack))
            if run == 0:
                q_in_second = q_early
            progress.update(run + 1)
        results[n] = {"steps": np.mean(steps, axis=0), "episodes_needed": np.array(needed),
                      "q_in_second": q_in_second}
    return {"env": env, "results": results}


# --- simulation-based search ---------------------------------------------------------------
def explore_model(env: envs.TabularEnv, steps: int, rng: np.random.Generator, seed: int
                  ) -> TableModel:
    """A model learned by wandering: in each state, try the action tried least so far.

    (Purely random steps can miss the one move into the goal, and a model without the goal
    gives every plan the value 0.)
    """
    model = TableModel(env.n_states, env.n_actions)
    tries = np.zeros((env.n_states, env.n_actions))
    state, _ = env.reset(seed=seed)
    for _ in range(steps):
        action = greedy_action(-tries[state], rng)
        tries[state, action] += 1
        next_state, reward, terminated, _, _ = env.step(action)
        model.update(state, action, reward, next_state, terminated)
        state = env.reset()[0] if terminated else next_state
    return model


def rollout(model: TableModel, state: int, depth: int, gamma: float,
            rng: np.random.Generator) -> float:
    """Discounted return of a random policy simulated in the model for up to `depth` steps."""
    ret, discount = 0.0, 1.0
    for action in rng.integers(model.n_actions, size=depth).tolist():
        reward, state, done = model.sample(state, action, rng)
        ret += discount * reward
        discount *= gamma
        if done:
            break
    return ret


def monte_carlo_search(model: TableModel, root: int, simulations: int, config: Config,
                       rng: np.random.Generator) -> int:
    """Evaluate each first action by the mean return of random rollouts; pick the best."""
    per_action = max(1, simulations // model.n_actions)
    means = np.zeros(model.n_actions)
    for action in range(model.n_actions):
        returns = []
        for _ in range(per_action):
            reward, state, done = model.sample(root, action, rng)
            tail = 0.0 if done else rollout(model, state, config.rollout_depth - 1,
                                            config.gamma, rng)
            returns.append(reward + config.gamma * tail)
        means[action] = np.mean(returns)
    return greedy_action(means, rng)


def mcts(model: TableModel, root: int, simulations: int, config: Config,
         rng: np.random.Generator) -> int:
    """UCT: a search tree over states grown by one state per simulation."""
    visits = np.zeros((model.n_states, model.n_actions))
    values = np.zeros((model.n_states, model.n_actions))  # mean simulated return of (s, a)
    in_tree = np.zeros(model.n_states, dtype=bool)
    in_tree[root] = True
    for _ in range(simulations):
        state, done, trajectory = root, False, []
        # 1. selection: inside the tree, UCB1 balances the best-looking and the least-tried.
        while in_tree[state] and not done and len(trajectory) < config.rollout_depth:
            action = ucb_action(visits[state], values[state], config.uct_c, rng)
            reward, next_state, done = model.sample(state, action, rng)
            trajectory.append((state, action, reward))
            state = next_state
        # 2. expansion: the first state outside the tree joins it.
        in_tree[state] = True
        # 3. simulation: a random rollout from there.
        ret = 0.0 if done else rollout(model, state, config.rollout_depth - len(trajectory),
                                       config.gamma, rng)
        # 4. backup: every (s, a) on the way gets the return that followed it.
        for state, action, reward in reversed(trajectory):
            ret = reward + config.gamma * ret
            visits[state, action] += 1
            values[state, action] += (ret - values[state, action]) / visits[state, action]
    return greedy_action(values[root], rng)


def ucb_action(visits: np.ndarray, values: np.ndarray, c: float,
               rng: np.random.Generator) -> int:
    """Untried actions first; then the best upper confidence bound Q + c sqrt(ln N / n)."""
    counts, means = visits.tolist(), values.tolist()  # plain Python: 4 numbers
    untried = [action for action, count in enumerate(counts) if count == 0]
    if untried:
        return untried[int(rng.integers(len(untried)))]
    log_total = math.log(sum(counts))
    bounds = np.array([m + c * math.sqrt(log_total / n) for m, n in zip(means, counts)])
    return greedy_action(bounds, rng)


def play_with_search(env: envs.TabularEnv, search, model: TableModel, simulations: int,
                     config: Config, rng: np.random.Generator, seed: int) -> int:
    """Steps to the goal when every real action is chosen by a fresh search."""
    state, _ = env.reset(seed=seed)
    for step in range(1, config.max_real_steps + 1):
        action = search(model, state, simulations, config, rng)
        state, _, terminated, _, _ = env.step(action)
        if terminated:
            return step
    return config.max_real_steps


def search_experiment(config: Config, rng: np.random.Generator) -> dict:
    env = envs.DynaMaze()
    model = explore_model(env, config.explore_steps, rng, seed=config.seed)
    known = np.mean([model.known(s, a) for s in range(env.n_states) for a in range(4)
                     if env.kind(s) not in "#G"])
    methods = {"Monte-Carlo search": monte_carlo_search, "MCTS (UCT)": mcts}
    results = {name: [] for name in methods}
    progress = cli.Progress(len(config.search_budgets) * len(methods), label="search setting")
    for name, search in methods.items():
        for budget in config.search_budgets:
            steps = [play_with_search(env, search, model, budget, config, rng,
                                      seed=config.seed + episode)
                     for episode in range(config.search_episodes)]
            results[name].append(float(np.mean(steps)))
            progress.update(sum(len(r) for r in results.values()))
    return {"budgets": np.array(config.search_budgets), "results": results,
            "model_coverage": float(known), "explore_steps": config.explore_steps,
            "episodes": config.search_episodes}


# --- Dyna-2 ---------------------------------------------------------------------------------
def dyna2(env: envs.DynaMaze, episodes: int, config: Config, rng: np.random.Generator,
          seed: int, simulations: int) -> np.ndarray:
    """Dyna-2, tabular: Q = Q_long + Q_short. Returns steps per real episode.

    Q_long learns by SARSA from real transitions only (what is true everywhere); Q_short learns
    by SARSA on episodes simulated from the current state (what matters right now) and is
    cleared at the start of each real episode. With simulations = 0 this is plain SARSA.
    """
    q_long = np.zeros((env.n_states, env.n_actions))
    model = TableModel(env.n_states, env.n_actions)
    steps = np.zeros(episodes)
    state, _ = env.reset(seed=seed)
    for episode in range(episodes):
        q_short = np.zeros_like(q_long)
        td_search(model, q_long, q_short, state, simulations, config, rng)
        action = epsilon_greedy(q_long[state] + q_short[state], config.epsilon, rng)
        terminated = False
        while not terminated:
            next_state, reward, terminated, _, _ = env.step(action)
            model.update(state, action, reward, next_state, terminated)
            if not terminated:
                td_search(model, q_long, q_short, next_state, simulations, config, rng)
            next_action = epsilon_greedy(q_long[next_state] + q_short[next_state],
                                         config.epsilon, rng)
            target = reward + config.gamma * (not terminated) * q_long[next_state, next_action]
            q_long[state, action] += config.alpha * (target - q_long[state, action])
            state, action = next_state, next_action
            steps[episode] += 1
        state, _ = env.reset()
    return steps


def td_search(model: TableModel, q_long: np.ndarray, q_short: np.ndarray, root: int,
              simulations: int, config: Config, rng: np.random.Generator) -> None:
    """SARSA on simulated episodes from `root`, changing only the short-term memory."""
    for _ in range(simulations):
        state = root
        action = epsilon_greedy(q_long[state] + q_short[state], config.epsilon, rng)
        for _ in range(config.rollout_depth):
            if not model.known(state, action):
                break  # the model knows nothing beyond here
            reward, next_state, done = model.sample(state, action, rng)
            next_action = epsilon_greedy(q_long[next_state] + q_short[next_state],
                                         config.epsilon, rng)
            # The TD error of the combined value; only the short-term part moves.
            next_value = q_long[next_state, next_action] + q_short[next_state, next_action]
            target = reward + config.gamma * (not done) * next_value
            error = target - (q_long[state, action] + q_short[state, action])
            q_short[state, action] += config.alpha * error
            if done:
                break
            state, action = next_state, next_action


def dyna2_experiment(config: Config, rng: np.random.Generator) -> dict:
    env = envs.DynaMaze()
    curves = {"SARSA (long-term memory only)": [], "Dyna-2": [], "Dyna-Q (n=5)": []}
    progress = cli.Progress(config.dyna2_runs, label="Dyna-2 run")
    for run in range(config.dyna2_runs):
        seed = config.seed + run
        curves["SARSA (long-term memory only)"].append(
            dyna2(env, config.dyna2_episodes, config, rng, seed, simulations=0))
        curves["Dyna-2"].append(
            dyna2(env, config.dyna2_episodes, config, rng, seed, config.dyna2_simulations))
        curves["Dyna-Q (n=5)"].append(dyna_q(env, config.dyna2_episodes, 5, config, rng,
                                             seed)[0])
        progress.update(run + 1)
    return {name: np.mean(runs, axis=0) for name, runs in curves.items()}


# --- figures ---------------------------------------------------------------------------------
def figure_table_model(result: dict, path: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    steps = result["steps"]
    axes[0].loglog(steps, result["errors"], marker="o", label="learned model")
    reference = result["errors"][-1] * np.sqrt(steps[-1] / steps)
    axes[0].loglog(steps, reference, "k--", lw=1, label="~ 1 / sqrt(experience)")
    axes[0].set_xlabel("steps of random experience")
    axes[0].set_ylabel("mean total-variation error of P_hat(.|s,a)")
    axes[0].set_title("FrozenLake: a table model from counts")
    axes[0].legend()
    axes[1].semilogx(steps, result["success"], marker="o", label="plan in the learned model")
    axes[1].axhline(result["optimum"], color="k", ls="--", lw=1,
                    label="plan in the true model")
    axes[1].set_ylim(0, 1)
    axes[1].set_xlabel("steps of random experience")
    axes[1].set_ylabel("true value of the plan at the start\n(gamma 0.99: ~ chance of reaching G)")
    axes[1].set_title("Value iteration on the learned model")
    axes[1].legend(loc="lower right")
    viz.save_figure(fig, path)


def greedy_arrows(env: envs.DynaMaze, q: np.ndarray) -> dict[tuple[int, int], tuple[int, int]]:
    """The greedy move of each free cell where Q has learned something (> 0), for drawing."""
    return {env.cell(s): envs.MOVES[int(np.argmax(q[s]))] for s in range(env.n_cells)
            if env.kind(s) in "S." and q[s].max() > 0}


def figure_dyna(result: dict, slack: int, path: str) -> None:
    fig = plt.figure(figsize=(14, 8))
    grid = fig.add_gridspec(2, 6, height_ratios=[1.2, 1])
    curves = fig.add_subplot(grid[0, :4])
    for n, res in result["results"].items():
        episodes = np.arange(2, len(res["steps"]) + 1)
        curves.plot(episodes, res["steps"][1:], label=f"{n} planning steps")
    curves.axhline(envs.DynaMaze.SHORTEST_PATH, color="k", ls=":", lw=1, label="shortest (14)")
    curves.set_ylim(0, 800)
    curves.set_xlabel("episode")
    curves.set_ylabel("steps per episode (mean over runs)")
    curves.set_title("Dyna-Q on the Dyna maze (Sutton & Barto fig. 8.2)")
    curves.legend()
    box = fig.add_subplot(grid[0, 4:])
    names = [f"n={n}" for n in result["results"]]
    needed = [res["episodes_needed"] for res in result["results"].values()]
    box.boxplot(needed, tick_labels=names)
    top = max(np.max(values) for values in needed)
    for i, values in enumerate(needed, start=1):
        box.text(i, np.max(values) + 0.04 * top, f"mean {np.mean(values):.1f}", ha="center")
    box.set_ylim(0, top * 1.15)
    box.set_ylabel(f"episodes until the greedy path\ntakes <= {14 + slack} steps")
    box.set_title("More planning, fewer real episodes")
    env = result["env"]
    for column, (n, res) in enumerate(result["results"].items()):
        ax = fig.add_subplot(grid[1, 2 * column:2 * column + 2])
        viz.draw_grid_world(ax, env.layout, arrows=greedy_arrows(env, res["q_in_second"]),
                            letters={"color": "grey"})
        ax.set_title(f"greedy action where Q > 0 after 2 episodes, n = {n}", fontsize=10)
    viz.save_figure(fig, path)


def figure_search(result: dict, max_steps: int, path: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, steps in result["results"].items():
        ax.semilogx(result["budgets"], steps, marker="o", label=name)
    ax.axhline(envs.DynaMaze.SHORTEST_PATH, color="k", ls=":", lw=1, label="shortest (14)")
    ax.set_ylim(0, max_steps * 1.05)
    ax.set_xlabel("simulations per real step")
    ax.set_ylabel(f"real steps to the goal, mean of {result['episodes']} episodes\n"
                  f"(gives up at {max_steps})")
    ax.set_title(f"Planning by search in a learned model of the maze\n"
                 f"(model from {result['explore_steps']} exploring steps, "
                 f"{result['model_coverage']:.0%} of pairs seen)")
    ax.legend()
    viz.save_figure(fig, path)


def figure_dyna2(result: dict, path: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, steps in result.items():
        ax.plot(np.arange(1, len(steps) + 1), steps, label=name)
    ax.axhline(envs.DynaMaze.SHORTEST_PATH, color="k", ls=":", lw=1, label="shortest (14)")
    ax.set_yscale("log")
    ax.set_xlabel("episode")
    ax.set_ylabel("steps per episode (mean over runs)")
    ax.set_title("Dyna-2: long-term memory + short-term search memory")
    ax.legend()
    viz.save_figure(fig, path)


# --- the demo --------------------------------------------------------------------------------
def run(config: Config) -> dict[str, float]:
    os.makedirs(config.out_dir, exist_ok=True)
    rng = np.random.default_rng(config.seed)

    def figure(name: str) -> str:
        return os.path.join(config.out_dir, name)

    learned = learned_model_experiment(config, rng)
    figure_table_model(learned, figure("table_model.png"))
    dyna = dyna_experiment(config, rng)
    figure_dyna(dyna, config.path_slack, figure("dyna_maze.png"))
    search = search_experiment(config, rng)
    figure_search(search, config.max_real_steps, figure("search.png"))
    second_gen = dyna2_experiment(config, rng)
    figure_dyna2(second_gen, figure("dyna2.png"))

    metrics = {f"episodes_to_shortest_n{n}": float(res["episodes_needed"].mean())
               for n, res in dyna["results"].items()}
    most, least = max(config.planning_steps), min(config.planning_steps)
    needed = {n: float(res["episodes_needed"].mean()) for n, res in dyna["results"].items()}
    metrics["planning_speedup"] = needed[least] / needed[most]
    metrics["learned_model_error"] = float(learned["errors"][-1])
    metrics["learned_plan_value_ratio"] = float(learned["success"][-1] / learned["optimum"])
    for name, key in (("Monte-Carlo search", "mc_search"), ("MCTS (UCT)", "mcts")):
        metrics[f"{key}_steps_best_budget"] = float(min(search["results"][name]))
    metrics["mcts_advantage"] = metrics["mc_search_steps_best_budget"] / \
        metrics["mcts_steps_best_budget"]
    early = slice(1, 10)
    sarsa_name = "SARSA (long-term memory only)"
    metrics["dyna2_early_steps"] = float(second_gen["Dyna-2"][early].mean())
    metrics["dyna2_early_speedup"] = float(second_gen[sarsa_name][early].mean()
                                           / second_gen["Dyna-2"][early].mean())
    return metrics


if __name__ == "__main__":
    cli.main(__name__)
