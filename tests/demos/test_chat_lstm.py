"""Chat LSTM: each rule of the data pipeline on a tiny corpus, the loss (padding, gradients),
generation, learning the chat log, resume, the NaN guard, and the --chat prompt."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minimal.demos import chat_lstm as C
from minimal.errors import DataError, NonFiniteLossError

ROOT = Path(__file__).resolve().parents[2]

# A tiny chat log written here; its first and last messages are long enough to be kept.
CORPUS = ["GG wp, EZ!", "gg wp ez", "lol", "gg gg", "gg wp ez  clap", "wp?", "gg wp ez",
          "ez game ez", "gg wp first try", "Don't\tstop me now"]


def test_clean_lowers_and_drops_odd_characters():
    assert C.clean("GG wp, EZ!") == ["gg", "wp", "ez"]
    assert C.clean("Don't\tstop  me now") == ["dont", "stop", "me", "now"]
    assert C.clean("?? !!") == []
    # letters beyond a-z are letters (a real chat's words survive); emoji are not
    assert C.clean("Kappa123 Caf\u00e9 \u2615!") == ["kappa123", "caf\u00e9"]
    assert C.dropped_characters("Caf\u00e9 \u2615!!") == ["!", "\u2615"]


def test_short_messages_are_dropped_and_the_first_and_last_are_kept():
    words = [C.clean(m) for m in CORPUS]
    kept = C.drop_short(words, 3)
    assert [len(w) for w in kept] == [3, 3, 4, 3, 3, 4, 4]  # "lol", "gg gg", "wp?" are gone
    assert kept[0] == ["gg", "wp", "ez"] and kept[-1] == ["dont", "stop", "me", "now"]
    rows = C.encode(kept, C.build_vocabulary(kept, 5), 20)
    assert len(rows) == 7 and (rows[0] != 0).sum() == 4 and (rows[-1] != 0).sum() == 5


def test_vocabulary_by_frequency_rare_id_end_id_and_padding():
    words = C.drop_short([C.clean(m) for m in CORPUS], 3)
    counts = {"gg": 5, "wp": 5, "ez": 6}  # in the kept messages
    vocabulary = C.build_vocabulary(words, 5)
    # at least 5 uses, most frequent first (ez 6; gg and wp 5, alphabetical); ids from 1
    assert vocabulary == ["ez", "gg", "wp"]
    assert all(counts[w] >= 5 for w in vocabulary)
    rare, end, classes = C.special_ids(vocabulary)
    assert (rare, end, classes) == (4, 5, 6)  # rare = vocabulary size + 1
    rows = C.encode([["gg", "wp", "ez", "clap"], ["ez", "game", "ez"]], vocabulary, 6)
    np.testing.assert_array_equal(rows, [[2, 3, 1, rare, end, 0, 0],
                                         [1, rare, 1, end, 0, 0, 0]])  # then padding 0
    assert C.decode(rows[1, :4], vocabulary) == ["ez", C.RARE, "ez", C.END]


def test_messages_are_cut_to_max_words():
    message = [f"w{i}" for i in range(25)]
    vocabulary = [f"w{i}" for i in range(25)]
    rows = C.encode([message], vocabulary, 20)
    assert rows.shape == (1, 21)
    np.testing.assert_array_equal(rows[0, :20], np.arange(1, 21))  # the first 20 words
    assert rows[0, 20] == C.special_ids(vocabulary)[1]  # then the end


def test_shuffle_uses_the_generator_and_split_is_by_message():
    messages = [[f"m{i}", "a", "b"] for i in range(50)]
    one = C.shuffle(messages, np.random.default_rng(3))
    assert one == C.shuffle(messages, np.random.default_rng(3))  # same seed, same order
    assert one != messages and sorted(one) == sorted(messages)  # a permutation
    train, held = C.split(one, 0.2)
    assert len(held) == 10 and len(train) == 40
    assert not {m[0] for m in train} & {m[0] for m in held}


def tiny_model(classes, seed=0, dropout=0.0, size=6):
    rng = np.random.default_rng(seed)
    model = C.ChatModel(classes, size, size, 2, dropout, rng)
    for p in model.parameters():  # random everywhere (biases too), padding row kept at 0
        p.data[...] = rng.normal(0, 0.5, p.shape)
    model.embedding.weight.data[C.PAD] = 0
    return model


def test_padding_does_not_change_the_loss():
    rng = np.random.default_rng(1)
    rows = np.zeros((4, 9), np.int32)
    for row, length in zip(rows, (3, 5, 8, 4)):
        row[:length - 1] = rng.integers(1, 7, length - 1)
        row[length - 1] = 8  # the end id
    model = tiny_model(9)
    model.eval()
    loss, n = C.sequence_loss(model, rows)
    assert n == 3 + 5 + 8 + 4 - 4  # every real next token, the ends included
    # more padding columns: the same loss
    wider = np.concatenate([rows, np.zeros((4, 6), np.int32)], axis=1)
    np.testing.assert_allclose(C.sequence_loss(model, wider)[0].item(), loss.item(), rtol=1e-6)
    # each message alone (no padding at all), weighted by its tokens: the same loss
    alone = [C.sequence_loss(model, row[None]) for row in rows]
    total = sum(part.item() * count for part, count in alone)
    np.testing.assert_allclose(total / n, loss.item(), rtol=1e-5)
    # a loss that scored the padding too (the original's) would differ
    hidden, _ = model.features(rows[:, :-1].T)
    everything = C.F.cross_entropy(model.out(hidden.reshape(-1, 6)), rows[:, 1:].T.reshape(-1))
    assert abs(everything.item() - loss.item()) > 0.1


def test_loss_gradients_match_central_differences_in_float64():
    rng = np.random.default_rng(2)
    model = tiny_model(7, seed=2)
    params = model.parameters()
    for p in params:
        p.data = p.data.astype(np.float64)
    rows = np.array([[1, 2, 3, 6, 0], [4, 5, 5, 2, 6], [3, 6, 0, 0, 0]], np.int32)
    loss, _ = C.sequence_loss(model, rows)
    loss.backward()
    for _ in range(3):  # three random directions through every parameter at once
        directions = [rng.standard_normal(p.shape) for p in params]
        directions[0][C.PAD] = 0  # the padding row is not a free parameter
        analytic = sum(float(np.vdot(p.grad, u)) for p, u in zip(params, directions))
        saved = [p.data.copy() for p in params]

        def loss_at(step, saved=saved, directions=directions):
            for p, base, u in zip(params, saved, directions):
                p.data = base + step * u
            return C.sequence_loss(model, rows)[0].item()

        numeric = (loss_at(1e-6) - loss_at(-1e-6)) / 2e-6
        for p, base in zip(params, saved):
            p.data = base
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_pick_greedy_top_k_and_never_padding():
    logits = np.array([[9.0, 1.0, 3.0, 2.0, 0.0]] * 400)  # the pad logit is the largest
    rng = np.random.default_rng(0)
    assert (C.pick(logits, rng) == 2).all()
    assert (C.pick(logits, rng, temperature=1.0, top_k=1) == 2).all()
    two = C.pick(logits, rng, temperature=1.0, top_k=2)
    assert set(two.tolist()) == {2, 3}  # only the two most likely real words
    share = (two == 2).mean()  # p(2) / (p(2) + p(3)) = e / (e + 1) = 0.731
    assert abs(share - np.e / (np.e + 1)) < 0.07
    hot = C.pick(logits, rng, temperature=100.0)  # nearly uniform over the four real ids
    assert set(hot.tolist()) == {1, 2, 3, 4}


def test_generation_stops_at_the_end_id():
    model = tiny_model(6)
    model.out.bias.data[...] = 0
    model.out.weight.data[...] = 0
    model.out.bias.data[3] = 50  # word 3 always wins ...
    got = C.complete(model, np.array([[1, 2]]), end=5, max_words=7, rng=np.random.default_rng())
    assert got == [[3, 3, 3, 3, 3]]  # ... until the message has max_words words
    model.out.bias.data[5] = 100  # now the end id wins at once
    assert C.complete(model, np.array([[1, 2], [2, 2]]), 5, 7, np.random.default_rng()) \
        == [[], []]


def test_ngram_baselines_by_hand():
    # ids 1-3 words, 4 rare, 5 end; training pairs (1,2) (2,5) (1,3) (3,5)
    train = np.array([[1, 2, 5, 0], [1, 3, 5, 0]])
    held = np.array([[1, 2, 5, 0]])
    got = C.ngram_perplexities(train, held, classes=6)
    # unigram, add-one over ids 1..5: targets 2, 3, 5, 5 -> (1, 2, 2, 1, 3) / 9
    np.testing.assert_allclose(got["unigram"], np.sqrt(9 / 2 * 9 / 3))
    # Witten-Bell: p(2 | 1) = (1 + 2 * 2/9) / (2 + 2), p(5 | 2) = (1 + 1 * 3/9) / (1 + 1)
    np.testing.assert_allclose(got["bigram"], np.sqrt(36 / 13 * 3 / 2))


def test_find_copypastas():
    pasta = ["this", "is", "a", "long", "pasta", "of", "many", "words", "that", "people",
             "paste", "again", "and", "again"]
    messages = [pasta] * 12 + [pasta + ["kappa"]] * 11 + [["short", "one", "two"]] * 30
    assert C.find_copypastas(messages, 20) == [pasta]  # the one with an emote extends it


def tiny_config(tmp_path, **changes):
    values = {"messages": 4000, "embed": 48, "hidden": 48, "steps": 150, "eval_every": 50,
              "lr": 2e-2, "eval_messages": 300, "dropout": 0.0, "batch_size": 32,
              "out_dir": str(tmp_path)}
    values.update(changes)
    return C.Config(**values)


def prepared_for(config):
    rng = np.random.default_rng(config.seed)
    return C.prepare(C.load_messages(config), config, rng), rng


def test_learns_the_chat_log_and_completes_a_copypasta(tmp_path):
    # a tiny run (the quick preset takes longer than this file may): 48 units, 150 steps
    config = tiny_config(tmp_path)
    prepared, rng = prepared_for(config)
    model, state = C.train(config, prepared, rng, progress=False)
    _, _, classes = C.special_ids(prepared["vocabulary"])
    perplexity = np.exp(C.evaluate(model, prepared["held_out"]))
    baselines = C.ngram_perplexities(prepared["train"], prepared["held_out"], classes)
    assert np.exp(state.history["held_out_loss"][0]) > 100  # untrained (classes: ~500)
    assert perplexity < baselines["bigram"]  # 7.5 on this split
    assert perplexity < 4.8  # measured 3.96 (seed 0)
    pastas = C.find_copypastas(prepared["train_words"], config.max_words)
    middle = C.from_the_middle(model, pastas, prepared["vocabulary"], 20, rng)
    assert len(pastas) == 10 and sum(m["exact"] for m in middle) >= 1


def test_resume_is_bit_for_bit_and_nan_stops_naming_the_step(tmp_path):
    config = tiny_config(tmp_path / "whole", messages=600, steps=6, eval_every=2,
                         hidden=8, embed=8, dropout=0.5)
    prepared, rng = prepared_for(config)
    whole, whole_state = C.train(config, prepared, rng, progress=False)
    part = tiny_config(tmp_path / "part", messages=600, steps=4, eval_every=2, hidden=8,
                       embed=8, dropout=0.5)
    prepared, rng = prepared_for(part)
    C.train(part, prepared, rng, progress=False)
    resumed_config = tiny_config(tmp_path / "part", messages=600, steps=6, eval_every=2,
                                 hidden=8, embed=8, dropout=0.5, resume=True)
    prepared, rng = prepared_for(resumed_config)
    resumed, resumed_state = C.train(resumed_config, prepared, rng, progress=False)
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert np.array_equal(a, b), name
    assert resumed_state.history["train_loss"] == whole_state.history["train_loss"]
    assert resumed_state.history["held_out_loss"] == whole_state.history["held_out_loss"]

    broken = tiny_config(tmp_path / "nan", messages=600, steps=6, hidden=8, embed=8)
    prepared, rng = prepared_for(broken)
    original_build = C.build

    def build_with_nan(config, classes, rng):
        model, adam = original_build(config, classes, rng)
        model.out.bias.data[3] = np.nan
        return model, adam

    C.build = build_with_nan
    try:
        with pytest.raises(NonFiniteLossError, match="step 1"):
            C.train(broken, prepared, rng, progress=False)
    finally:
        C.build = original_build


def test_chat_without_a_checkpoint_says_how_to_train(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        C.main(["--chat", "--out-dir", str(tmp_path)])
    assert stop.value.code == 1
    assert "--quick" in capsys.readouterr().err


def test_chat_prompt_answers_lines_and_exits_at_end_of_input(tmp_path):
    config = tiny_config(tmp_path, messages=1500, steps=10, eval_every=10, hidden=16, embed=16)
    prepared, rng = prepared_for(config)
    C.train(config, prepared, rng, progress=False)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "minimal.demos.chat_lstm", "--chat",
                           "--out-dir", str(tmp_path)],
                          input="hello chat\nzzqx is this\ngg \u2615 wp!\n",
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
                          check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sum(line.strip().startswith("greedy : hello chat") for line in lines) == 1
    assert sum(line.strip().startswith("sampled: zzqx is this") for line in lines) == 1
    assert any("rare word: zzqx" in line for line in lines)
    assert "  (this model reads letters and digits only; left out: ! \u2615)" in lines
    assert lines[-1] == "bye"


def test_a_chat_log_too_small_for_a_vocabulary_is_refused_in_one_line(tmp_path):
    (tmp_path / "chat.txt").write_text("\n".join(CORPUS[:5]) + "\n")
    config = tiny_config(tmp_path, data=str(tmp_path / "chat.txt"), min_count=5)
    with pytest.warns(RuntimeWarning, match="holds 5"):  # asked for more messages than that
        messages = C.load_messages(config)
    with pytest.raises(DataError, match=r"no word is used 5 times or more in the \d+ training "
                                        r"messages.*a longer chat log"):
        C.prepare(messages, config, np.random.default_rng(0))


def test_data_file_is_one_message_per_line(tmp_path):
    path = tmp_path / "chat.txt"
    path.write_text("\n".join(CORPUS) + "\n\n", encoding="utf-8")  # a blank line is no message
    config = C.Config(data=str(path), messages=len(CORPUS), min_count=1,
                      out_dir=str(tmp_path))
    assert C.load_messages(config) == CORPUS
    prepared = C.prepare(C.load_messages(config), config, np.random.default_rng(0))
    assert len(prepared["train"]) + len(prepared["held_out"]) == 7
    with pytest.raises(C.DataError, match="no such file"):
        C.load_messages(C.Config(data=str(tmp_path / "missing.txt")))
