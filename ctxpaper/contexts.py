"""The 15 context tags of the paper (§3.1).

The paper selected the 15 context keywords most frequent in Deezer playlist
titles: car, chill, club, dance, gym, happy, night, party, relax, running, sad,
sleep, summer, work, workout. ``CONTEXTS`` keeps them in the column order of the
authors' released files, which every array in this project follows.
:func:`match_contexts` finds them in playlist titles, the first step of the
§3.1 procedure (:mod:`ctxpaper.playlists`). Chapter 02 shows the matching
rules on tricky titles; chapters 01 and 04–06 use ``CONTEXTS`` as their
column order.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping

CONTEXTS: tuple[str, ...] = (
    "car", "chill", "club", "dance", "gym", "happy", "night", "party",
    "relax", "running", "sad", "sleep", "summer", "work", "workout",
)

# --------------------------------------------------------------------------
# Title normalisation and keyword matching (paper §3.1)
# --------------------------------------------------------------------------
#
# The paper keeps "playlists that included any of the 15 keywords" without
# saying how a keyword is found in a title. The rules chosen here:
#
# * **Normalisation** (:func:`normalise_title`): Unicode compatibility
#   decomposition (NFKD) so that full-width and "math bold" letters become plain
#   ones and accents become separate marks, which are dropped ("Chíll" → chill);
#   camelCase is split ("SummerVibes" → summer vibes) — matching tries the
#   title split and unsplit, so "PaRtY" still matches; case is folded; every run
#   of characters that are not letters (spaces, punctuation, emoji, digits,
#   underscores) becomes one space, so "#party2019🎉" → "party".
# * **Whole words only**: a keyword matches a token, never part of one, so
#   "carnival", "scar", "homework", "clubhouse", "nightmare" match nothing.
# * **Inflections, not derivations**: each context accepts the keyword with its
#   inflectional endings only — plural, verb forms, comparative (table
#   :data:`KEYWORD_FORMS`: "parties", "workouts", "dancing", "sleeping",
#   "sadder"). Derived words are different words and do not match: "sadness",
#   "happiness", "sleepy", "relaxation", "summertime", "dancehall" (a genre).
#   "running" is the keyword itself; the bare verb "run" is too ambiguous
#   ("run the world") and does not match.
# * **Repeated letters**: a token and a form are compared after squeezing every
#   run of one letter to a single letter, so "chiiiill", "sleeeep", "partyyyy"
#   and "happpy" match. No two forms of different contexts collide once
#   squeezed (checked below at import time).
# * **Two-word forms**: "work out" and "working out" mean workout, not work
#   (also "work-out", which the punctuation rule turns into "work out");
#   "chill out" is chill through its first word.
# * **Several contexts**: a title matches every context it names: "chill summer
#   night" → {chill, summer, night}.
# * Non-Latin scripts are kept as letters but match nothing: the keywords are
#   English, as in the paper. ``None``, empty and emoji-only titles match
#   nothing.

#: Accepted word forms per context (before letter squeezing).
KEYWORD_FORMS: Mapping[str, tuple[str, ...]] = {
    "car": ("car", "cars"),
    "chill": ("chill", "chills", "chilling", "chillin", "chilled", "chillout"),
    "club": ("club", "clubs", "clubbing", "clubbin"),
    "dance": ("dance", "dances", "dancing", "dancin", "danced"),
    "gym": ("gym", "gyms"),
    "happy": ("happy", "happier", "happiest"),
    "night": ("night", "nights"),
    "party": ("party", "parties", "partying", "partyin", "partys"),
    "relax": ("relax", "relaxing", "relaxed", "relaxes"),
    "running": ("running", "runnin"),
    "sad": ("sad", "sadder", "saddest"),
    "sleep": ("sleep", "sleeps", "sleeping", "sleepin"),
    "summer": ("summer", "summers"),
    "work": ("work", "works", "working", "workin", "worked"),
    "workout": ("workout", "workouts"),
}

#: Two consecutive tokens (after normalisation) that name one context together.
BIGRAM_FORMS: Mapping[tuple[str, str], str] = {
    ("work", "out"): "workout",
    ("working", "out"): "workout",
    ("workin", "out"): "workout",
    ("work", "outs"): "workout",
}

_SQUEEZE = re.compile(r"(.)\1+")
_NON_LETTERS = re.compile(r"[\W\d_]+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def _squeeze(token: str) -> str:
    return _SQUEEZE.sub(r"\1", token)


def _build_lookup() -> dict[str, str]:
    lookup: dict[str, str] = {}
    for context, forms in KEYWORD_FORMS.items():
        for form in forms:
            key = _squeeze(form)
            if lookup.get(key, context) != context:
                raise AssertionError(f"word form {form!r} is ambiguous once squeezed")
            lookup[key] = context
    return lookup


_LOOKUP = _build_lookup()
_BIGRAMS = {(_squeeze(a), _squeeze(b)): c for (a, b), c in BIGRAM_FORMS.items()}
assert set(KEYWORD_FORMS) == set(CONTEXTS)


def normalise_title(title: object, split_camel: bool = True) -> str:
    """Normalise a playlist title to lower-case Latin-letter words.

    Parameters
    ----------
    title : str or None
        A raw playlist title. ``None`` and float NaN (a missing value from a
        table) give ``""``.

    Returns
    -------
    str
        The title's letter-only words separated by single spaces: accents and
        compatibility variants removed, camelCase split, case folded, every
        other character (punctuation, emoji, digits) a separator.
        Repeated letters are kept here; matching squeezes them.
    """
    if title is None or (isinstance(title, float) and title != title):
        return ""
    if not isinstance(title, str):
        raise TypeError(f"a playlist title must be a string or None, got {type(title).__name__}: {title!r}")
    text = unicodedata.normalize("NFKD", title)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    if split_camel:
        text = _CAMEL.sub(" ", text)
    text = text.casefold()
    return " ".join(_NON_LETTERS.split(text)).strip()


#: Titles up to this length are cached (real playlist titles are far shorter).
_CACHED_TITLE_CHARS = 512


@functools.lru_cache(maxsize=1 << 18)
def _match(title: str) -> frozenset[str]:
    found = _match_tokens(normalise_title(title, split_camel=False))
    if _CAMEL.search(title):
        found |= _match_tokens(normalise_title(title, split_camel=True))
    return frozenset(found)


def _match_tokens(text: str) -> set[str]:
    tokens = [_squeeze(t) for t in text.split()]
    found: set[str] = set()
    i = 0
    while i < len(tokens):
        pair = _BIGRAMS.get((tokens[i], tokens[i + 1])) if i + 1 < len(tokens) else None
        if pair is not None:
            found.add(pair)
            i += 2
            continue
        ctx = _LOOKUP.get(tokens[i])
        if ctx is not None:
            found.add(ctx)
        i += 1
    return found


def match_contexts(title: object) -> frozenset[str]:
    """Return the contexts whose keyword appears as a whole word in ``title``.

    See the module notes above for the exact rules (inflections accepted,
    derived words and substrings rejected, repeated letters squeezed).

    Parameters
    ----------
    title : str or None
        A raw playlist title; ``None`` or NaN is a missing title.

    Returns
    -------
    frozenset of str
        Context names from :data:`CONTEXTS`; empty when none matches.

    Examples
    --------
    >>> sorted(match_contexts("Chill ☀️ Summer Night"))
    ['chill', 'night', 'summer']
    >>> match_contexts("carnival")
    frozenset()
    """
    if title is None or (isinstance(title, float) and title != title):
        return frozenset()
    if not isinstance(title, str):
        raise TypeError(f"a playlist title must be a string or None, got {type(title).__name__}: {title!r}")
    if len(title) > _CACHED_TITLE_CHARS:
        # Only short titles are cached: a dump of huge titles must not fill memory.
        return _match.__wrapped__(title)
    return _match(title)
