"""A word-level LSTM that talks like a live-stream chat, and completes its copypastas.

Follows the post on simulating Twitch chat with a recurrent network: scrape chat messages,
turn each into a row of word ids, and train a word-level LSTM to predict the next word, so that
given the first few words of a message it says the rest the way chat would. Chat is a good
corpus for it: messages are short and independent of each other, and full of copypastas (long
texts pasted again and again), which the model should learn to finish from their middle. The
file is longer than most demos because it is the post's whole program, each part small: the six
data rules, the model, generation, the chat prompt, and two n-gram baselines and a copypasta
test to judge the model by.

The data pipeline, one small function per rule (as in the post):
    clean       lower case; keep letters, digits and spaces ("Don't!!" -> "dont"); split into
                words (the post keeps a-z and 0-9 only; letters beyond a-z are kept here so a
                real chat's accented words survive; the same on the generated, ASCII log)
    drop_short  drop messages of 2 words or fewer
    shuffle     shuffle the messages with the run's generator (chat scraped at the same time is
                correlated)
    split       train / held-out, by message (the last 10 %)
    build_vocabulary  words used at least 5 times (in the training messages), ids 1, 2, ... in
                order of frequency; 0 is padding; any other word gets the rare id (vocab + 1)
    encode      each message cut to 20 words, then an end id (vocab + 2), then padding 0

Model and key equations (x_t the id of word t, T the message length, C the classes):
    e_t = Embedding(x_t)                                  200 numbers per word
    h_t = LSTM2(dropout(e_t), h_{t-1})                    2 layers of 200, dropout between
    p(x_{t+1} | x_1..x_t) = softmax(W dropout(h_t) + b)   over C = vocab + 3 ids
    loss = -1/N sum over the N real next words (the end id included, padding never) of
           log p(x_{t+1} | x_1..x_t);     perplexity = exp(loss)
    Adam 5e-3, gradient norm clipped at 5, batches of 64 messages
Generation feeds the prompt, then one word at a time: greedy (argmax) or sampled from
softmax(logits / temperature) over the top k ids, until the end id or 20 words.

Baselines on the same split: a unigram model (add-one) and a bigram model (Witten-Bell
interpolation with the unigram), scored on exactly the LSTM's targets.

Run:
    python -m minimal.demos.chat_lstm --quick            train (writes outputs/chat_lstm/)
    python -m minimal.demos.chat_lstm --chat             type a few words, get the rest
    python -m minimal.demos.chat_lstm --data chat.txt    your own log, one message per line
    python -m minimal.demos.chat_lstm --resume --steps 4000   train on from the checkpoint
The chat prompt loads out_dir's checkpoint (vocabulary included), reads a line of a few words at
a time, prints the greedy and a sampled completion, says which characters it left out (emoji,
punctuation) and which words it does not know (read as the rare id), and stops at an empty line
or the end of input.

Figures and tables (in out_dir):
    chat_lstm_curves.png      loss and perplexity over training: train (with dropout) and
                              held-out (without), the unigram and bigram perplexities as lines
    chat_lstm_copypastas.png  how often the model finishes a copypasta exactly (the rest, then
                              the end) given its first k words, greedy and sampled; below, each
                              copypasta given its first half and what the model wrote
    chat_lstm_completions.md  the post's table: prompts with greedy and sampled completions,
                              and the copypastas from their middle
    checkpoint.npz            the model, Adam, generator, counters, curves and the vocabulary
                              (a text array, read without pickle by --chat)
The copypastas are found in the data, not given: messages of 12 words or more (after the cut)
pasted word for word at least 10 times; a variant that only extends a more common one (the
pasta plus an emote) is not counted. On the generated log these are its 12 copypastas.

Settings: the full preset trains 3000 steps (2.7 epochs) on 100 000 messages, the quick one
300 steps on 20 000; both keep the post's model, dropout, Adam 5e-3 and the clip at 5.

Departures from the original:
- The original computed the cleaned message and then split the raw one, so the cleaning was
  thrown away; here the cleaned words are used.
- Its counter was incremented before each row was written, so row 0 stayed empty and the final
  slice dropped the last message; here every kept message is a row, the first and last too.
- Its test `len(words) >= 2` kept 2-word messages, which the post says are dropped; here they
  are (min_words 3). Words are split on runs of white space, so a double space is not a word.
- The loss covered every position, padding included; here only real next words count, and an
  explicit end id after each message tells the model (and the sampler) where a message stops.
- A held-out split (the vocabulary counted on the training messages only, so the held-out
  perplexity is honest) and n-gram baselines, which the post did not have.
- Dropout also between the LSTM layers and before the softmax, the usual places for a 2-layer
  LSTM language model (the post applies it to the inputs); the rows are shuffled once, as in
  the post, and read in order every epoch, so a checkpoint at any step resumes exactly.
- Data: a generated chat log (minimal/data/chatlog.py: 100 000 messages of everyday phrases,
  emote spam, 12 copypastas, one-word reactions and a Zipf tail of made-up words) instead of
  scraped Twitch chat (the post had about 150 000 messages and 33 000 words). The gradient of
  the mean loss per token stays well below the clip at 5 here (its norm at every step is kept
  in the checkpoint's history as grad_norm), so the clip only guards against a blow-up.

Results (seed 0, 1 BLAS thread; on the generated log, so no number of the post's scraped chat
is comparable):
    preset  messages  vocabulary  held-out perplexity        copypastas exact   CPU time
                      (words)     LSTM   bigram   unigram    from the middle
    full    100 000   3368        5.51   13.7     166        12 of 12           6 min 43 s
    quick    20 000   1026        4.87   11.1     130        12 of 12           39 s
The untrained model's held-out perplexity is about the number of classes (1031 in the quick
run); the LSTM ends at less than half the bigram's: templates ("who else is here from the
{game} clip"), emote spam and copypastas need more than one word of context. What is left is
mostly the random-word messages, which no model can predict. In the copypasta figure greedy
completion finishes every copypasta from its first half, while a sample (temperature 0.8,
top-k 10) wanders off now and then; greedy decoding repeats an emote for as long as continuing
beats ending at each step, where samples stop after a few, as chat does. The finer records
(per prompt length, gradient norms, speed against PyTorch) are in benchmarks/README.md.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minimal import data, nn, optim
from minimal import functional as F
from minimal.app import cli, files, training, viz
from minimal.app.files import atomic_file
from minimal.autograd import Tensor, no_grad
from minimal.errors import CheckpointError, ConfigError, DataError

PAD = 0  # id of "no word": fills a row after its message, never predicted, never in the loss
RARE = "<rare>"  # how the rare-word id (vocabulary size + 1) is shown
END = "<end>"  # how the end-of-message id (vocabulary size + 2) is shown


@dataclass
class Config:
    seed: int = 0  # seed for every random number in the run
    messages: int = 100_000  # chat messages to generate (or the first N lines of --data)
    data: str = ""  # text file with one chat message per line (empty = the generated chat log)
    min_count: int = 5  # a word needs this many uses in the training messages to get an id
    max_words: int = 20  # messages are cut to this many words
    min_words: int = 3  # messages with fewer words are dropped (the post drops 2 or fewer)
    held_out: float = 0.1  # fraction of the messages kept out of training, for perplexity
    embed: int = 200  # word embedding size
    hidden: int = 200  # LSTM units per layer
    layers: int = 2  # stacked LSTM layers
    dropout: float = 0.5  # dropout on the embeddings, between the layers and before the softmax
    batch_size: int = 64  # messages per step
    steps: int = 3000  # training steps (one batch each; the rows are read in order, wrapping)
    lr: float = 5e-3  # Adam step
    clip: float = 5.0  # gradient-norm clip
    eval_every: int = 250  # steps between held-out evaluations (also when checkpoints are written)
    eval_messages: int = 2000  # held-out messages used for the curve (the final number uses all)
    temperature: float = 0.8  # sampling temperature of the sampled completions
    top_k: int = 10  # sample among the k most likely words (0 = all)
    prompts: tuple = ("hello chat", "i have been", "dear diary", "is this", "that play is",
                      "can we get", "my mom asked", "kappa kappa", "why is the", "press one",
                      "who else is", "i miss the")  # prompts of the completion table
    chat: bool = False  # talk to the trained model instead of training: prompts from stdin
    resume: bool = False  # continue from the checkpoint in out_dir
    out_dir: str = "outputs/chat_lstm"  # where figures, the table and the checkpoint go

    def __post_init__(self):
        cli.validate(self, counts=("messages", "min_count", "max_words", "min_words", "embed",
                                   "hidden", "layers", "batch_size", "steps", "eval_every",
                                   "eval_messages"),
                     non_negative=("temperature",), positive=("lr", "clip"),
                     fractions=("held_out",))
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout (--dropout) must be a number from 0 up to (not "
                                  f"including) 1, got {self.dropout!r}")
        if not 0 < self.held_out < 1:
            raise ConfigError(f"held_out (--held-out) must lie strictly between 0 and 1, "
                                  f"got {self.held_out!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ConfigError(f"top_k (--top-k) must be a whole number >= 0, got "
                                  f"{self.top_k!r}")
        if self.min_words > self.max_words:
            raise ConfigError(f"min_words (--min-words) {self.min_words} is more than "
                                  f"max_words (--max-words) {self.max_words}")


# quick: a fifth of the messages and 300 steps (1.35 epochs); the model and optimiser as in full
QUICK = {"messages": 20_000, "steps": 300, "eval_every": 50, "eval_messages": 1000}

TARGETS = {
    "held_out_perplexity": ("<=", 5.5),  # measured 4.87; bigram 11.1, untrained 1031
    "copypasta_exact": (">=", 0.75),  # measured 12 of 12 from their middle
}


# ===== the data pipeline: one small function per rule of the post ==========================

def clean(message: str) -> list[str]:
    """Lower case, keep only letters, digits and spaces (so "don't" -> "dont", "Kappa!!" ->
    "kappa", "Café" -> "café"), and split into words. Tabs and other white space count as
    spaces."""
    text = re.sub(r"\s", " ", message.lower())
    return "".join(ch for ch in text if ch.isalnum() or ch == " ").split()


def dropped_characters(message: str) -> list[str]:
    """The characters of a message that `clean` drops (punctuation, emoji), each once."""
    return sorted({ch for ch in message if not (ch.isalnum() or ch.isspace())})


def drop_short(messages: Sequence[list[str]], min_words: int) -> list[list[str]]:
    """Messages of at least `min_words` words, in their order (the first and last included)."""
    return [words for words in messages if len(words) >= min_words]


def shuffle(messages: Sequence[list[str]], rng: np.random.Generator) -> list[list[str]]:
    """The messages in a random order: chat scraped at the same time is correlated."""
    return [messages[i] for i in rng.permutation(len(messages))]


def split(messages: Sequence[list[str]], held_out: float) -> tuple[list, list]:
    """(training, held-out) by message: the last `held_out` fraction is held out."""
    n_held = max(1, round(held_out * len(messages)))
    if n_held >= len(messages):
        raise DataError(f"{len(messages)} messages are too few to hold {held_out:.0%} out; "
                        "use more messages (--messages) or a bigger --data file")
    return list(messages[:-n_held]), list(messages[-n_held:])


def build_vocabulary(messages: Sequence[list[str]], min_count: int) -> list[str]:
    """Words used at least `min_count` times, most frequent first (ties alphabetical).
    Word k of the list gets id k + 1: id 0 is padding."""
    counts = Counter(word for words in messages for word in words)
    kept = [word for word, count in counts.items() if count >= min_count]
    return sorted(kept, key=lambda word: (-counts[word], word))


def special_ids(vocabulary: Sequence[str]) -> tuple[int, int, int]:
    """(rare id, end id, number of classes): rare = vocabulary size + 1 as in the post, then
    an end-of-message id, so the model learns where a message stops."""
    rare = len(vocabulary) + 1
    return rare, rare + 1, rare + 2


def encode(messages: Sequence[list[str]], vocabulary: Sequence[str],
           max_words: int) -> np.ndarray:
    """Rows of ids (len(messages), max_words + 1): each message cut to `max_words` words, a word
    outside the vocabulary as the rare id, then the end id, then padding (0)."""
    rare, end, _ = special_ids(vocabulary)
    index = {word: i + 1 for i, word in enumerate(vocabulary)}
    rows = np.full((len(messages), max_words + 1), PAD, np.int32)
    for row, words in zip(rows, messages):
        ids = [index.get(word, rare) for word in words[:max_words]] + [end]
        row[:len(ids)] = ids
    return rows


def decode(ids: Sequence[int], vocabulary: Sequence[str]) -> list[str]:
    rare, end, _ = special_ids(vocabulary)
    names = {PAD: "<pad>", rare: RARE, end: END}
    return [names.get(int(i)) or vocabulary[int(i) - 1] for i in ids]


def load_messages(config: Config) -> list[str]:
    """The raw chat lines: --data (one message per line) or the generated chat log."""
    if config.data and not Path(config.data).expanduser().exists():
        raise DataError(f"--data {config.data}: no such file; expected a UTF-8 text file with "
                        "one chat message per line")
    try:
        return data.load("chat", config.messages, config.seed, path=config.data or None)
    except (OSError, ValueError) as error:
        raise DataError(str(error)) from None


def prepare(messages: Sequence[str], config: Config, rng: np.random.Generator) -> dict:
    """The whole pipeline: clean, drop short, shuffle, split, vocabulary, encode."""
    kept = drop_short([clean(m) for m in messages], config.min_words)
    if len(kept) < 2:
        raise DataError(f"only {len(kept)} of {len(messages)} messages have {config.min_words} "
                        "or more words; a chat log needs many more")
    train_words, held_words = split(shuffle(kept, rng), config.held_out)
    vocabulary = build_vocabulary(train_words, config.min_count)
    if not vocabulary:
        raise DataError(f"no word is used {config.min_count} times or more in the "
                        f"{len(train_words)} training messages, so the model would know no "
                        "word at all; give a longer chat log (thousands of messages), or a "
                        "smaller --min-count")
    return {"vocabulary": vocabulary, "train_words": train_words,
            "train": encode(train_words, vocabulary, config.max_words),
            "held_out": encode(held_words, vocabulary, config.max_words)}


# ===== the model ===========================================================================

class ChatModel(nn.Module):
    """ids (T, B) -> embeddings (T, B, E) -> 2-layer LSTM (T, B, H) -> logits over the words.

    Dropout on the embeddings (the post), between the layers and before the softmax. The
    output layer is applied only to the rows asked for (the real tokens), since the softmax over
    the vocabulary is most of the work.
    """

    def __init__(self, classes: int, embed: int, hidden: int, layers: int, dropout: float,
                 rng: np.random.Generator):
        super().__init__()
        self.embedding = nn.Embedding(classes, embed, padding_idx=PAD, rng=rng)
        self.drop = nn.Dropout(dropout, rng=rng)
        self.lstm = nn.LSTM(embed, hidden, layers, dropout=dropout, rng=rng)
        self.out = nn.Linear(hidden, classes, rng=rng)

    def features(self, ids: np.ndarray, state=None):
        """(T, B) ids -> (T, B, H) top-layer outputs (after dropout), (h, c)."""
        x = self.drop(self.embedding(ids))  # (T, B, E)
        hidden, state = self.lstm(x, state)  # (T, B, H)
        return self.drop(hidden), state


def sequence_loss(model: ChatModel, rows: np.ndarray) -> tuple[Tensor, int]:
    """Mean cross-entropy of every real next token of a batch of rows (B, L), and their number.

    Input word t predicts word t + 1 (the last word predicts the end id). Positions whose target
    is padding are left out before the softmax; cross_entropy's ignore_index says the same rule
    for the rows that remain, so nothing padded ever enters the loss.
    """
    length = int((rows != PAD).sum(1).max())  # trim the batch to its longest message
    inputs, targets = rows[:, :length - 1].T, rows[:, 1:length].T  # (T, B) each
    hidden, _ = model.features(inputs)  # (T, B, H)
    flat = hidden.reshape(-1, hidden.shape[-1])  # (T*B, H)
    real = np.flatnonzero(targets.reshape(-1) != PAD)
    logits = model.out(flat[real])  # (N, C), N real tokens
    return F.cross_entropy(logits, targets.reshape(-1)[real], ignore_index=PAD), len(real)


def evaluate(model: ChatModel, rows: np.ndarray, batch: int = 500) -> float:
    """Mean loss per real token over `rows`, without dropout (nats)."""
    model.eval()
    total, count = 0.0, 0
    with no_grad():
        for start in range(0, len(rows), batch):
            loss, n = sequence_loss(model, rows[start:start + batch])
            total, count = total + float(loss.data) * n, count + n
    model.train()
    return total / count


# ===== baselines on the same split =========================================================

def ngram_perplexities(train: np.ndarray, held_out: np.ndarray, classes: int) -> dict:
    """Perplexity of a unigram and a bigram model on the held-out rows' real next tokens.

    Unigram: add-one counts of the training targets. Bigram: Witten-Bell interpolation,
    p(w | v) = (c(v, w) + T(v) p_uni(w)) / (c(v) + T(v)) with T(v) the number of different
    words seen after v: no setting to tune, and never zero.
    """
    def pairs(rows):
        prev, nxt = rows[:, :-1].reshape(-1), rows[:, 1:].reshape(-1)
        keep = nxt != PAD
        return prev[keep], nxt[keep]

    prev, nxt = pairs(train)
    unigram = np.bincount(nxt, minlength=classes).astype(np.float64) + 1
    unigram[PAD] = 0
    unigram /= unigram.sum()
    pair_counts = Counter(zip(prev.tolist(), nxt.tolist()))
    context = np.bincount(prev, minlength=classes).astype(np.float64)
    followers = np.bincount([v for v, _ in pair_counts], minlength=classes).astype(np.float64)
    h_prev, h_next = pairs(held_out)
    seen = np.array([pair_counts.get(p, 0) for p in zip(h_prev.tolist(), h_next.tolist())])
    t = followers[h_prev]
    p_bigram = (seen + t * unigram[h_next]) / np.maximum(context[h_prev] + t, 1e-12)
    p_bigram = np.where(context[h_prev] > 0, p_bigram, unigram[h_next])
    return {"unigram": float(np.exp(-np.log(unigram[h_next]).mean())),
            "bigram": float(np.exp(-np.log(p_bigram).mean()))}


# ===== generation ==========================================================================

def pick(logits: np.ndarray, rng: np.random.Generator, temperature: float = 0.0,
         top_k: int = 0) -> np.ndarray:
    """Next ids from logits (B, C): greedy when temperature is 0, else a sample from
    softmax(logits / temperature) over the top_k most likely words (all when 0). Never PAD."""
    logits = logits.astype(np.float64)
    logits[:, PAD] = -np.inf
    if temperature == 0:
        return logits.argmax(1)
    scaled = logits / temperature
    if 0 < top_k < scaled.shape[1]:
        kth = np.partition(scaled, -top_k, axis=1)[:, -top_k][:, None]
        scaled = np.where(scaled >= kth, scaled, -np.inf)
    probs = np.exp(scaled - scaled.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    cumulative = probs.cumsum(1)
    draws = rng.random((len(probs), 1)) * cumulative[:, -1:]
    return np.minimum((cumulative < draws).sum(1), probs.shape[1] - 1)


def complete(model: ChatModel, prompts: np.ndarray, end: int, max_words: int,
             rng: np.random.Generator, temperature: float = 0.0, top_k: int = 0) -> list[list]:
    """Continue each prompt (B, k) of ids word by word until the end id or `max_words` words in
    all. Returns the new ids of each prompt, without the end id."""
    prompts = np.asarray(prompts)
    batch, known = prompts.shape
    out: list[list[int]] = [[] for _ in range(batch)]
    done = np.zeros(batch, bool)
    model.eval()
    with no_grad():
        hidden, state = model.features(prompts.T)  # the whole prompt in one pass
        for _ in range(max_words - known):
            logits = model.out(hidden[-1]).data  # (B, C) after the last word so far
            nxt = pick(logits, rng, temperature, top_k)
            for b in np.flatnonzero(~done):
                if nxt[b] == end:
                    done[b] = True
                else:
                    out[b].append(int(nxt[b]))
            if done.all():
                break
            hidden, state = model.features(nxt[None], state)
    model.train()
    return out


def find_copypastas(messages: Sequence[list[str]], max_words: int, min_words: int = 12,
                    min_repeats: int = 10) -> list[list[str]]:
    """Copypastas: long messages (after the cut) pasted again and again, word for word. A
    message that only extends a more common one (the pasta plus an emote) is not counted."""
    counts = Counter(tuple(words[:max_words]) for words in messages
                     if len(words[:max_words]) >= min_words)
    common = sorted((m for m, c in counts.items() if c >= min_repeats), key=lambda m: -counts[m])
    kept: list[tuple] = []
    for pasta in common:
        if not any(pasta[:len(k)] == k or k[:len(pasta)] == pasta for k in kept):
            kept.append(pasta)
    return [list(p) for p in kept]


def copypasta_completion(model: ChatModel, pastas: Sequence[list[str]], vocabulary: list[str],
                         config: Config, rng: np.random.Generator, samples: int = 4) -> dict:
    """How often the model finishes a copypasta exactly: given its first k words, is the greedy
    continuation exactly the rest, then the end? (And how often is a sample, at the Config's
    temperature and top-k?) For every k; the headline is the middle, k = n // 2."""
    _, end, _ = special_ids(vocabulary)
    ids = [encode([p], vocabulary, config.max_words)[0, :len(p)] for p in pastas]
    longest = max(len(p) for p in pastas)
    greedy, sampled = np.full(longest - 1, np.nan), np.full(longest - 1, np.nan)
    for k in range(1, longest):
        group = [i for i in range(len(pastas)) if len(pastas[i]) > k]
        prompts = np.stack([ids[i][:k] for i in group])
        got = complete(model, prompts, end, config.max_words, rng)
        greedy[k - 1] = np.mean([g == ids[i][k:].tolist() for g, i in zip(got, group)])
        got = complete(model, np.repeat(prompts, samples, 0), end, config.max_words, rng,
                       config.temperature, config.top_k)
        sampled[k - 1] = np.mean([g == ids[i][k:].tolist()
                                  for g, i in zip(got, np.repeat(group, samples))])
    middle = from_the_middle(model, pastas, vocabulary, config.max_words, rng)
    return {"greedy": greedy, "sampled": sampled, "middle": middle,
            "exact": float(np.mean([m["exact"] for m in middle]))}


def from_the_middle(model: ChatModel, pastas: Sequence[list[str]], vocabulary: list[str],
                    max_words: int, rng: np.random.Generator) -> list[dict]:
    """Each copypasta's first half, the model's greedy continuation, and whether it is exact."""
    _, end, _ = special_ids(vocabulary)
    middle = []
    for pasta in pastas:
        ids = encode([pasta], vocabulary, max_words)[0, :len(pasta)]
        k = len(pasta) // 2
        got = complete(model, ids[None, :k], end, max_words, rng)[0]
        middle.append({"prompt": " ".join(pasta[:k]), "truth": " ".join(pasta[k:]),
                       "got": " ".join(decode(got, vocabulary)),
                       "exact": got == ids[k:].tolist()})
    return middle


def completion_table(model: ChatModel, prompts: Sequence[str], vocabulary: list[str],
                     config: Config, rng: np.random.Generator, samples: int = 2) -> list[dict]:
    """The post's table: each prompt with its greedy completion and a few samples."""
    _, end, _ = special_ids(vocabulary)
    rows = []
    for prompt in prompts:
        words = clean(prompt)[:config.max_words - 1]
        if not words:
            continue
        ids = encode([words], vocabulary, config.max_words)[:, :len(words)]
        greedy = complete(model, ids, end, config.max_words, rng)[0]
        sampled = [complete(model, ids, end, config.max_words, rng, config.temperature,
                            config.top_k)[0] for _ in range(samples)]
        rows.append({"prompt": " ".join(words), "greedy": " ".join(decode(greedy, vocabulary)),
                     "sampled": [" ".join(decode(s, vocabulary)) for s in sampled]})
    return rows


# ===== training ============================================================================

def build(config: Config, classes: int, rng: np.random.Generator):
    model = ChatModel(classes, config.embed, config.hidden, config.layers, config.dropout, rng)
    adam = optim.Adam(model.parameters(), lr=config.lr)
    return model, adam


def batch_rows(rows: np.ndarray, step: int, batch_size: int) -> np.ndarray:
    """The rows of step `step`: read in order, wrapping around (the rows were shuffled once,
    as in the post). A step's batch depends only on its number, so any step can resume."""
    return rows[(step * batch_size + np.arange(batch_size)) % len(rows)]


def train(config: Config, prepared: dict, rng: np.random.Generator,
          progress: bool = True) -> tuple[ChatModel, training.TrainingState]:
    vocabulary = prepared["vocabulary"]
    _, _, classes = special_ids(vocabulary)
    model, adam = build(config, classes, rng)
    # a resumed run may train on for longer, and sample its tables differently
    state = training.TrainingState("chat_lstm", config, {"model": model}, {"adam": adam}, rng,
                                   may_differ=("temperature", "top_k", "prompts"),
                                   length=("steps", "step"))
    if config.resume:
        state.resume()
        if [str(w) for w in state.history.get("vocabulary", [])] != vocabulary:
            raise CheckpointError(f"{state.path}: was trained on another vocabulary (the data "
                                  "changed); start afresh in another --out-dir")
    state.history["vocabulary"] = list(vocabulary)  # what --chat needs to read and write words
    train_rows, held_rows = prepared["train"], prepared["held_out"][:config.eval_messages]
    first = state.counters.get("step", 0)
    meter = cli.Progress(config.steps, every=5.0, first=first) if progress else None
    if not state.history.get("eval_step"):  # the untrained model, for the curve's start
        state.history["eval_step"] = [0]
        state.history["held_out_loss"] = [evaluate(model, held_rows)]
    params = model.parameters()
    for step in range(first, config.steps):
        loss, _ = sequence_loss(model, batch_rows(train_rows, step, config.batch_size))
        state.check_finite(f"step {step + 1}", loss=loss)
        adam.zero_grad()
        loss.backward()
        norm = optim.clip_grad_norm(params, config.clip)
        adam.step()
        state.history.setdefault("train_loss", []).append(float(loss.data))
        state.history.setdefault("grad_norm", []).append(norm)  # before the clip
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            state.history.setdefault("eval_step", []).append(step + 1)
            state.history.setdefault("held_out_loss", []).append(evaluate(model, held_rows))
            state.counters["step"] = step + 1
            state.save()
        if meter:
            meter.update(step + 1, loss=float(loss.data),
                         held_out=state.history["held_out_loss"][-1])
    return model, state


# ===== figures and tables ==================================================================

def _pyplot():
    """matplotlib, imported only for the figures (the --chat prompt starts faster without)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: dict, baselines: dict, steps_per_epoch: float, path: str) -> None:
    plt = _pyplot()
    train_loss = np.asarray(history["train_loss"], np.float64)
    eval_step, held = np.asarray(history["eval_step"]), np.asarray(history["held_out_loss"])
    window = max(1, len(train_loss) // 50)
    smooth = viz.smooth(train_loss, window)
    steps = np.arange(1, len(train_loss) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.plot(steps, train_loss, color="tab:blue", alpha=0.2, lw=0.7)
    left.plot(steps, smooth, color="tab:blue", label=f"train (with dropout, {window}-step mean)")
    left.plot(eval_step, held, "o-", color="tab:red", ms=3, label="held-out (no dropout)")
    left.set(xlabel="step", ylabel="cross-entropy per real token (nats)",
             title="Loss over training")
    right.plot(steps, np.exp(smooth), color="tab:blue", label="train")
    right.plot(eval_step, np.exp(held), "o-", color="tab:red", ms=3, label="held-out LSTM")
    for (name, value), colour in zip(baselines.items(), ("tab:grey", "tab:green")):
        right.axhline(value, color=colour, ls="--", lw=1, label=f"{name} model ({value:.1f})")
    right.set_yscale("log")
    right.set(xlabel="step", ylabel="perplexity (log scale)",
              title="Perplexity: LSTM vs n-gram baselines on the same split")
    for axes in (left, right):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=9)
        top = axes.secondary_xaxis("top", functions=(lambda s: s / steps_per_epoch,
                                                     lambda e: e * steps_per_epoch))
        top.set_xlabel("epoch")
    viz.save_figure(fig, path)


def plot_copypastas(result: dict, config: Config, path: str) -> None:
    plt = _pyplot()
    fig = plt.figure(figsize=(11, 7))
    top, bottom = fig.add_gridspec(2, 1, height_ratios=[1, 0.8]).subplots()
    ks = np.arange(1, len(result["greedy"]) + 1)
    top.plot(ks, result["greedy"], "o-", label="greedy")
    top.plot(ks, result["sampled"], "s-",
             label=f"sampled (temperature {config.temperature}, top-k {config.top_k})")
    top.set(xlabel="words of the copypasta given (k)", ylim=(-0.03, 1.03), xticks=ks,
            ylabel="fraction completed exactly", title="Completing the chat's copypastas "
            "(exactly the rest of the message, then its end) from their first k words")
    top.grid(alpha=0.3)
    top.legend(loc="lower right")
    middle = result["middle"]
    bottom.axis("off")
    bottom.set_title(f"Given the first half (greedy): {sum(m['exact'] for m in middle)} of "
                     f"{len(middle)} completed exactly", fontsize=11)
    lines = [f"{'given':<46}  model's continuation"]
    for m in middle:
        mark = "" if m["exact"] else "   <- the pasta: " + m["truth"]
        lines.append(f"{_short(m['prompt'], 46):<46}  {m['got']}{mark}")
    bottom.text(0, 1, "\n".join(lines), family="monospace", fontsize=8, va="top",
                transform=bottom.transAxes)
    viz.save_figure(fig, path)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def write_table(rows: list[dict], result: dict, metrics: dict, config: Config,
                path: str) -> None:
    intro = (f"Greedy, and {len(rows[0]['sampled']) if rows else 0} samples at temperature "
             f"{config.temperature}, top-k {config.top_k}. Held-out perplexity "
             f"{metrics['held_out_perplexity']:.2f} (bigram {metrics['bigram_perplexity']:.2f}, "
             f"unigram {metrics['unigram_perplexity']:.2f}).")
    lines = ["# Chat LSTM: prompts and completions", "", intro, "",
             "| prompt | greedy | sampled |", "|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['prompt']} | {row['greedy']} | {' / '.join(row['sampled'])} |")
    if not result["middle"]:
        lines += ["", "No copypastas found (no long message repeated 10 times or more)."]
    else:
        lines += ["", f"## Copypastas given their first half: {result['exact']:.0%} exact", "",
                  "| given | model's continuation | the pasta's | exact |", "|---|---|---|---|"]
    for m in result["middle"]:
        lines.append(f"| {m['prompt']} | {m['got']} | {m['truth']} | "
                     f"{'yes' if m['exact'] else 'no'} |")
    text = "\n".join(lines) + "\n"
    with atomic_file(path) as file:
        file.write(text.encode())


# ===== the experiment ======================================================================

def run(config: Config) -> dict[str, float]:
    os.makedirs(config.out_dir, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    prepared = prepare(load_messages(config), config, rng)
    vocabulary = prepared["vocabulary"]
    _, _, classes = special_ids(vocabulary)
    train_rows = prepared["train"]
    print(f"chat_lstm: {len(train_rows)} training and {len(prepared['held_out'])} held-out "
          f"messages, vocabulary {len(vocabulary)} words (+ rare, end), "
          f"{int((train_rows[:, 1:] != PAD).sum())} training tokens")
    model, state = train(config, prepared, rng)
    held_out_loss = evaluate(model, prepared["held_out"])
    baselines = ngram_perplexities(train_rows, prepared["held_out"], classes)
    pastas = find_copypastas(prepared["train_words"], config.max_words)
    pasta_result = (copypasta_completion(model, pastas, vocabulary, config, rng)
                    if pastas else {"exact": float("nan"), "middle": []})
    metrics = {"held_out_perplexity": float(np.exp(held_out_loss)),
               "bigram_perplexity": baselines["bigram"],
               "unigram_perplexity": baselines["unigram"],
               "copypasta_exact": pasta_result["exact"],
               "copypastas": float(len(pastas)),
               "epochs": config.steps * config.batch_size / len(train_rows)}
    table = completion_table(model, config.prompts, vocabulary, config, rng)
    plot_curves(state.history, {"bigram": baselines["bigram"], "unigram": baselines["unigram"]},
                len(train_rows) / config.batch_size,
                os.path.join(config.out_dir, "chat_lstm_curves.png"))
    if pastas:
        plot_copypastas(pasta_result, config,
                        os.path.join(config.out_dir, "chat_lstm_copypastas.png"))
    write_table(table, pasta_result, metrics, config,
                os.path.join(config.out_dir, "chat_lstm_completions.md"))
    for row in table:
        print(f"  {row['prompt']!r:>18} -> {row['greedy']}")
    return metrics


# ===== the chat prompt =====================================================================

def train_command(config: Config) -> str:
    command = "python -m minimal.demos.chat_lstm --quick"
    if config.out_dir != Config.out_dir:
        command += f" --out-dir {config.out_dir}"
    return command


def load_chat_model(config: Config) -> tuple[ChatModel, list[str], dict]:
    """The trained model and its vocabulary from out_dir's checkpoint (CheckpointError when
    there is none, saying how to train one)."""
    path = Path(config.out_dir) / training.CHECKPOINT_NAME
    saved = training.load_for_use(path, {}, train_command(config), demo="chat_lstm")  # the file
    arrays = files.load_arrays(path)
    if "history/vocabulary" not in arrays:
        raise CheckpointError(f"{path}: holds no vocabulary; is it a chat_lstm checkpoint?")
    vocabulary = [str(w) for w in arrays["history/vocabulary"]]
    settings = Config(**{k: v for k, v in saved.items() if k in Config.__dataclass_fields__
                         and k != "prompts"})
    _, _, classes = special_ids(vocabulary)
    model = ChatModel(classes, settings.embed, settings.hidden, settings.layers, 0.0,
                      np.random.default_rng(0))
    training.load_for_use(path, {"model": model}, train_command(config), demo="chat_lstm")
    return model, vocabulary, saved


def chat(config: Config, stdin=None, stdout=None) -> None:
    """Read a few words per line, print the rest of the message (greedy, then sampled).
    An empty line or the end of input ends the session."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    model, vocabulary, saved = load_chat_model(config)
    _, end, _ = special_ids(vocabulary)
    index = {word: i + 1 for i, word in enumerate(vocabulary)}
    max_words = int(saved.get("max_words", config.max_words))
    rng = np.random.default_rng(config.seed)
    interactive = stdin.isatty()
    print(f"chat_lstm: {len(vocabulary)} words. Type the start of a message; an empty line "
          "ends.", file=stdout, flush=True)
    while True:
        if interactive:
            print("> ", end="", file=stdout, flush=True)
        line = stdin.readline()
        words = clean(line)[:max_words - 1]
        if not line or not line.strip():
            break
        if not words:
            print("  (no letters or digits in that line; try some words)", file=stdout,
                  flush=True)
            continue
        dropped = dropped_characters(line)
        if dropped:
            print(f"  (this model reads letters and digits only; left out: {' '.join(dropped)})",
                  file=stdout)
        unknown = [w for w in words if w not in index]
        if unknown:
            print(f"  (not in the vocabulary, read as the rare word: {', '.join(unknown)})",
                  file=stdout)
        ids = encode([words], vocabulary, max_words)[:, :len(words)]
        greedy = complete(model, ids, end, max_words, rng)[0]
        sampled = complete(model, ids, end, max_words, rng, config.temperature, config.top_k)[0]
        print(f"  greedy : {' '.join(words + decode(greedy, vocabulary))}", file=stdout)
        print(f"  sampled: {' '.join(words + decode(sampled, vocabulary))}", file=stdout,
              flush=True)
    print("bye", file=stdout, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    """`--chat` talks to the trained model; anything else trains (cli.main)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config = cli.parse_config(Config, QUICK, argv, (__doc__ or "").strip())
    if not config.chat:
        cli.main(__name__, argv)
        return
    try:
        chat(config)
    except (CheckpointError, DataError) as error:
        print(f"chat_lstm: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print(file=sys.stderr)


if __name__ == "__main__":
    main()
