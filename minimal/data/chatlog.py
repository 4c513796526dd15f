"""A generated live-stream chat log, the stand-in for the Twitch chat the chat LSTM learns.

Real stream chat is a few kinds of message mixed: everyday phrases about the game and the
streamer, emote spam (one emote repeated), copypastas (long fixed texts pasted again and again,
which a model can learn to complete from their middle), one-word reactions, and a long tail of
rarely seen words (names, typos, slang). This generator mixes the same kinds with the same
shape of vocabulary: sentence words are drawn from a Zipf law over a core list plus thousands of
made-up words, so a handful are very common and most are seen once or twice.
All text is written for this project.
"""

from __future__ import annotations

import numpy as np

EMOTES = ("Kappa", "PogChamp", "LUL", "KEKW", "4Head", "BibleThump", "Kreygasm", "monkaS",
          "ResidentSleeper", "SeemsGood", "NotLikeThis", "PepeHands", "Clap", "EZ", "WutFace",
          "HypeTrain", "SadCat", "BlobWave", "CoolStory", "GiftHeart")
GAMES = ("minecraft", "dota", "league", "chess", "tetris", "valorant", "hearthstone", "fortnite",
         "overwatch", "mario kart", "elden ring", "apex", "stardew valley", "rocket league",
         "dungeon pancake", "space trucker", "goat racer", "castle of crumbs")
STREAMERS = ("dan", "lily", "bigmike", "nova", "pixel", "chef", "the streamer", "bob")
COPYPASTAS = (
    ("i have been watching this stream for three years and i have never seen a play this clean "
     "truly a legend among us"),
    ("hello chat i am a first time viewer and i just want to say this is the best stream on the "
     "whole internet no cap"),
    "he is not lagging he is just playing on a higher frame of reality that we cannot see yet",
    ("dear diary today the streamer missed every single shot and i laughed so hard my cat left "
     "the room"),
    "press one if you think he will win this round press two if you already know he will throw",
    "my mom asked me why i am yelling at a screen at three in the morning and i said chat needs me",
    "this is the part of the stream where we all pretend we are not worried about the boss fight",
    ("to be fair you have to have a very high iq to understand this strategy most viewers lack "
     "the patience"),
    "breaking news local streamer forgets to unmute for twenty minutes chat sends help",
    "i came here to have a good time and honestly i feel so attacked right now",
    "stop scrolling and look at this play again in slow motion that is art that is pure art",
    "every time he says one more game an angel loses its wings and the moderators cry",
)
_SUBJECTS = ("this game", "that play", "the boss", "the music", "this run", "chat", "the map",
             "his aim", "the new patch", "the build", "the camera", "that jump")
_ADJECTIVES = ("insane", "clean", "so bad", "huge", "wild", "crazy", "cursed", "perfect",
               "actually good", "the worst", "so cute", "illegal", "broken", "unreal")
_TEMPLATES = (
    "{greet} {streamer}", "{greet} chat", "{greet} everyone", "what rank is {streamer}",
    "is this {game}", "{streamer} play {game} next", "{subject} is {adjective}",
    "that was {adjective}", "{streamer} you are {adjective}", "when is the {game} stream",
    "how long has he been playing {game}", "can we get some {emote} in the chat",
    "first time watching {game} this is {adjective}", "{subject} looks {adjective} today",
    "why is {subject} so {adjective}", "who else is here from the {game} clip",
    "{streamer} what do you think about {subject}", "{streamer} reads chat confirmed",
    "ok {subject} was {adjective} ngl", "i miss the old {game} days",
    "{streamer} is the best {game} player", "no way {subject} just happened",
)
_GREETINGS = ("hi", "hello", "hey", "yo", "sup", "good morning", "evening", "hiya")
_REACTIONS = ("lol", "lmao", "gg", "f", "w", "l", "?", "??", "!!!", "omg", "wow", "nice",
              "rip", "pog", "oof", "yes", "no", "1", "11111", "haha", "xd", "ez", "true")
_CORE_TEXT = (
    "the i you a to and is it that this he of in what was so for my lol no be on just like me "
    "with are not but do have can we they all get one how why when at your go if its good play "
    "game chat man bro dude time now up out there got really know dont yeah think see win lose "
    "stream gg guys please right back again more still need make want look never always best "
    "worst round team shot kill dead boss level run fast slow late early today tonight tomorrow "
    "love hate fun real fake true false maybe sure okay wait stop start next last first new old "
    "big small hard easy funny sad happy mad lucky unlucky clip moment mod mods sub subs follow "
    "music volume mic camera lag ping server patch build item skill heal tank carry feed throw"
)
_CORE_WORDS = tuple(_CORE_TEXT.split())

_SYLLABLES = ("ka", "po", "ri", "zu", "mo", "ne", "ta", "shi", "gro", "bla", "ve", "din", "lo",
              "pa", "xo", "qui", "ber", "tam", "flo", "sk", "ee", "yo", "wu", "an", "th", "og")


def _rare_words(rng: np.random.Generator, count: int) -> list[str]:
    """Made-up words (usernames, slang, typos) for the long tail of the vocabulary."""
    lengths = rng.integers(2, 5, count)
    picks = rng.integers(0, len(_SYLLABLES), (count, 4))
    words = ["".join(_SYLLABLES[p] for p in row[:length]) for row, length in zip(picks, lengths)]
    suffix = rng.random(count)
    return [word + str(int(s * 100)) if s < 0.1 else word for word, s in zip(words, suffix)]


def _zipf_cdf(count: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, count + 1) ** exponent
    cdf = np.cumsum(weights / weights.sum())
    cdf[-1] = 1.0
    return cdf


def _draw(rng: np.random.Generator, cdf: np.ndarray) -> int:
    return int(np.searchsorted(cdf, rng.random(), side="right"))


def generate(n_messages: int, seed: int) -> list[str]:
    """`n_messages` chat lines, deterministic in `seed`."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4]))
    vocabulary = list(_CORE_WORDS) + _rare_words(rng, 6000)
    # Zipf laws: the k-th word (emote, reaction, pasta) has probability proportional to 1/k^a.
    word_cdf = _zipf_cdf(len(vocabulary), 1.0)
    emote_cdf = _zipf_cdf(len(EMOTES), 1.2)
    reaction_cdf = _zipf_cdf(len(_REACTIONS), 1.0)
    pasta_cdf = _zipf_cdf(len(COPYPASTAS), 1.0)  # some pastas are more popular than others
    kinds = rng.choice(5, n_messages, p=[0.34, 0.2, 0.12, 0.24, 0.10])
    messages = []
    for kind in kinds:
        if kind == 0:
            template = _TEMPLATES[rng.integers(len(_TEMPLATES))]
            messages.append(template.format(
                greet=_GREETINGS[rng.integers(len(_GREETINGS))],
                streamer=STREAMERS[rng.integers(len(STREAMERS))],
                game=GAMES[rng.integers(len(GAMES))],
                subject=_SUBJECTS[rng.integers(len(_SUBJECTS))],
                adjective=_ADJECTIVES[rng.integers(len(_ADJECTIVES))],
                emote=EMOTES[rng.integers(len(EMOTES))]))
        elif kind == 1:
            emote = EMOTES[_draw(rng, emote_cdf)]
            messages.append(" ".join([emote] * int(rng.integers(1, 9))))
        elif kind == 2:
            pasta = COPYPASTAS[_draw(rng, pasta_cdf)]
            roll = rng.random()
            if roll < 0.15:  # someone pastes only the start
                words = pasta.split()
                pasta = " ".join(words[:int(rng.integers(4, len(words)))])
            elif roll < 0.3:
                pasta = pasta + " " + EMOTES[rng.integers(len(EMOTES))]
            messages.append(pasta)
        elif kind == 3:
            length = int(rng.integers(2, 13))
            words = np.searchsorted(word_cdf, rng.random(length), side="right")
            # No word twice in a row: "the the the" reads as a bug, not as chat.
            kept = [w for i, w in enumerate(words) if i == 0 or w != words[i - 1]]
            messages.append(" ".join(vocabulary[w] for w in kept))
        else:
            messages.append(_REACTIONS[_draw(rng, reaction_cdf)])
    return messages
