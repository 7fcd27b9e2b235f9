"""Run profiles: how much of the paper's setting a chapter runs.

* ``full`` — the paper's setting: Deezer-scale world, 646-frame inputs, the
  whole split, up to 200 epochs with early stopping. Hours on a GPU; days on a
  2-core CPU.
* ``quick`` — the default for ``make book``: every chapter, every loss variant,
  on a 2-core machine in well under an hour. Shorter crops, fewer tracks and
  epochs; the architecture stays the paper's.
* ``smoke`` — seconds per chapter, for CI: checks that everything runs, not
  what it finds.

Every notebook's ``parameters`` cell has ``profile`` and ``seed``; they are
validated here (or by :meth:`ctxpaper.runs.Run.of`) before any work starts.
Every size a chapter uses is a field or property of :class:`Profile`, so no
notebook branches on a profile's name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


#: The paper's balancing limit (§3.2: "a limit of 20000 tracks").
PAPER_BALANCE_CAP = 20000


@dataclass(frozen=True)
class Profile:
    """Sizes for one profile. Field docs say which chapter uses them."""

    name: str
    #: ch. 02–03: simulated world size as a fraction of Deezer scale
    #: (1.0 ≈ 612k contextual playlists, ~200k tagged tracks).
    world_scale: float
    #: ch. 04–07: number of tracks whose previews are synthesised and trained on
    #: (None: every track of the balanced simulated set).
    n_tracks: int | None
    #: ch. 04–07: frames of the log-mel patch fed to the CNN (646 = 30 s).
    frames: int
    #: ch. 05–07: training epochs at most (early stopping may end sooner).
    max_epochs: int
    #: ch. 05–07: early-stopping patience in epochs (paper: 10).
    patience: int
    #: ch. 05–07: mini-batch size (paper's code: 32).
    batch_size: int
    #: ch. 06–07: how many seeds each Table 2 row is trained with.
    n_seeds: int
    #: ch. 07: random repetitions of the label-only experiments.
    n_repeats: int
    #: ch. 03: seeds each split method is run with on the released labels.
    n_split_seeds: int = 5
    #: ch. 04: tracks whose audio descriptors are measured.
    n_descriptor_tracks: int = 300

    @property
    def balance_cap(self) -> int:
        """ch. 03–07: the §3.2 balancing cap scaled to the world, ``max(1, round(20000 × world_scale))``.

        At full scale it is the paper's 20,000 tracks per context.
        """
        return max(1, round(PAPER_BALANCE_CAP * self.world_scale))

    def as_dict(self) -> dict[str, Any]:
        """The profile as a plain dict (for cache keys and provenance lines)."""
        return dataclasses.asdict(self)


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", world_scale=0.004, n_tracks=96, frames=32,
                     max_epochs=1, patience=1, batch_size=32, n_seeds=1, n_repeats=2,
                     n_split_seeds=1, n_descriptor_tracks=48),
    # quick: sized on this 2-core CPU so that the 5 Table 2 variants x 3 seeds
    # and chapter 07's extra losses train in about half an hour in all
    # (benchmarks/bench_model.py; ~1,000 training tracks, ~8 s per epoch).
    # 32 frames are 1.5 s of each 30 s excerpt: the architecture is the
    # paper's, its input is shorter.
    "quick": Profile("quick", world_scale=0.05, n_tracks=1500, frames=32,
                     max_epochs=10, patience=3, batch_size=32, n_seeds=3, n_repeats=5),
    "full": Profile("full", world_scale=1.0, n_tracks=None, frames=646,
                    max_epochs=200, patience=10, batch_size=32, n_seeds=1, n_repeats=20),
}

DEFAULT_PROFILE = "quick"


def get_profile(profile: str | Profile) -> Profile:
    """Return the :class:`Profile` for a name, with a clear error for a bad one."""
    if isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}"
        ) from None


def validate_seed(seed: Any) -> int:
    """Return ``seed`` as an int, or raise a ValueError naming the bad value."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return seed


def validate_params(profile: Any, seed: Any) -> tuple[Profile, int]:
    """Validate a notebook's ``profile`` and ``seed`` parameters together."""
    return get_profile(profile), validate_seed(seed)
