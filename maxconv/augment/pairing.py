"""Which response (and wet share) each clip gets: seeded draws or a pairs file.

A clip's draw depends only on the run's seed and the clip's output name, not
on its position, the other clips, or which worker runs it: a resumed run, a
run on Ray, or a run with clips added draws the same for every clip they
share.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .discovery import Entry

DEFAULT_SEED = 0

_RANGE = re.compile(r"^\s*([0-9.]+)\s*-\s*([0-9.]+)\s*$")


@dataclass(frozen=True)
class MixSpec:
    """A wet share: one value (``low == high``) or a range drawn per clip."""

    low: float
    high: float

    @property
    def fixed(self) -> bool:
        return self.low == self.high


def parse_mix(text: str | float) -> MixSpec:
    """Parse ``0.3`` or ``0.2-0.6`` (values within 0..1).

    Raises
    ------
    ValueError
        If it is not a number or a range of two, or falls outside 0..1.
    """
    if isinstance(text, (int, float)):
        low = high = float(text)
    else:
        match = _RANGE.match(text)
        try:
            low, high = (float(match[1]), float(match[2])) if match else (float(text),) * 2
        except ValueError:
            raise ValueError(
                f"--mix must be a wet share such as 0.3 or a range such as 0.2-0.6, not {text!r}"
            ) from None
    if not (0.0 <= low <= high <= 1.0):
        raise ValueError(
            f"--mix must lie within 0..1 (a range low-high with low <= high), not {text!r}"
        )
    return MixSpec(low, high)


@dataclass(frozen=True)
class Pair:
    """A clip, the response it goes through, and its wet share."""

    clip: Entry
    response: str
    mix: float


def clip_rng(seed: int, name: str) -> np.random.Generator:
    """The random stream of one clip: a function of the seed and the clip's name only."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return np.random.default_rng([seed, int.from_bytes(digest, "little")])


def draw_pairs(
    clips: Sequence[Entry], responses: Sequence[str], mix: MixSpec, seed: int = DEFAULT_SEED
) -> list[Pair]:
    """Give each clip a response drawn uniformly, and a wet share from `mix`.

    Raises
    ------
    InputError
        If there are clips but no responses.
    """
    if clips and not responses:
        raise InputError("no responses found; give audio files, .npy or folders to --responses")
    pairs = []
    for clip in clips:
        rng = clip_rng(seed, clip.name)
        index = int(rng.integers(len(responses)))
        value = mix.low if mix.fixed else float(rng.uniform(mix.low, mix.high))
        pairs.append(Pair(clip, responses[index], value))
    return pairs


def pairs_from_list(
    clips: Sequence[Entry] | None, listed: Sequence[Entry], mix: MixSpec, seed: int = DEFAULT_SEED
) -> list[Pair]:
    """Pairs as a ``--pairs`` file gives them.

    With `clips` None the file's own entries are the clips; otherwise each
    clip is looked up in the file by its path. A wet share missing from the
    file is drawn from `mix` as `draw_pairs` would.

    Raises
    ------
    InputError
        If an entry names no response, or a clip is missing from the file.
    """
    by_path = {}
    for entry in listed:
        if entry.response is None:
            raise InputError(
                f"pairs file entry '{entry.path}' names no response; give a 'response' column"
            )
        by_path[os.path.realpath(entry.path)] = entry
    chosen = []
    for clip in listed if clips is None else clips:
        entry = by_path.get(os.path.realpath(clip.path))
        if entry is None:
            raise InputError(
                f"clip '{clip.path}' is not in the pairs file; add it there, or leave out "
                "--pairs to draw responses with --seed"
            )
        chosen.append((clip, entry))
    pairs = []
    for clip, entry in chosen:
        if entry.mix is not None:
            if not 0.0 <= entry.mix <= 1.0:
                raise InputError(f"pairs file: mix {entry.mix} of '{clip.path}' is not within 0..1")
            value = entry.mix
        elif mix.fixed:
            value = mix.low
        else:
            value = float(clip_rng(seed, clip.name).uniform(mix.low, mix.high))
        pairs.append(Pair(clip, entry.response, value))
    return pairs
