"""Tests for ctxpaper.contexts: title normalisation and keyword matching."""

import string

import pytest
from hypothesis import given, settings, strategies as st

from ctxpaper.contexts import CONTEXTS, KEYWORD_FORMS, match_contexts, normalise_title

CASES = [
    # substring traps: a keyword inside another word is not the keyword
    ("carnival", set()), ("scar", set()), ("Scar Tissue", set()), ("sadness", set()),
    ("homework", set()), ("clubhouse", set()), ("nightmare", set()), ("tonight", set()),
    ("dancehall", set()), ("summertime", set()), ("sleepy", set()), ("happiness", set()),
    ("relaxation", set()), ("carpool", set()), ("workaholic", set()), ("run the world", set()),
    # empty, emoji-only, non-Latin, missing
    ("", set()), ("   ", set()), ("🎉🔥💃", set()), ("夜の音楽", set()), ("Музыка для сна", set()),
    (None, set()), (float("nan"), set()),
    # inflections
    ("parties", {"party"}), ("Workouts", {"workout"}), ("dancing queen", {"dance"}),
    ("SLEEPING", {"sleep"}), ("cars", {"car"}), ("chillin", {"chill"}), ("sadder", {"sad"}),
    # case, accents, emoji, punctuation, digits, compatibility forms
    ("PaRtY", {"party"}), ("Chíll", {"chill"}), ("Café Rélax", {"relax"}), ("#party2019🎉", {"party"}),
    ("gym_music", {"gym"}), ("Ｐａｒｔｙ", {"party"}), ("𝐬𝐥𝐞𝐞𝐩", {"sleep"}), ("summer'19", {"summer"}),
    # repeated letters
    ("chiiiiill", {"chill"}), ("partyyyy", {"party"}), ("sleeeeep", {"sleep"}), ("haaappy", {"happy"}),
    # camelCase and multiword titles
    ("SummerVibes", {"summer"}), ("chill summer night", {"chill", "summer", "night"}),
    ("Chill ☀️ Summer Night", {"chill", "summer", "night"}), ("party & dance", {"party", "dance"}),
    # work / workout
    ("work out", {"workout"}), ("Work-Out", {"workout"}), ("working out hard", {"workout"}),
    ("work", {"work"}), ("music for work", {"work"}), ("work and workout", {"work", "workout"}),
    ("WorkOut", {"workout"}),
]


@pytest.mark.parametrize("title,expected", CASES)
def test_tricky_titles(title, expected):
    assert match_contexts(title) == frozenset(expected)


def test_every_listed_form_matches_only_its_context():
    for ctx, forms in KEYWORD_FORMS.items():
        for form in forms:
            assert match_contexts(form) == {ctx}, form
            assert match_contexts(f"~{form.upper()}!") == {ctx}, form


def test_forms_cover_exactly_the_contexts():
    assert set(KEYWORD_FORMS) == set(CONTEXTS)
    for c in CONTEXTS:
        assert c in KEYWORD_FORMS[c]


def test_non_string_title_is_an_error():
    with pytest.raises(TypeError, match="title"):
        match_contexts(42)


def test_normalise_title():
    assert normalise_title("  Ça  VA?! Chíll__Out 2019 ") == "ca va chill out"
    assert normalise_title(None) == ""
    assert normalise_title("🎉") == ""


FILLER = ["music", "mix", "my", "best", "vibes", "hits", "songs", "the", "for", "love", "road"]
SEPS = st.text(alphabet=" -_.,!?#&/+|🎉🔥☀️0123456789", min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(ctxs=st.lists(st.sampled_from(CONTEXTS), min_size=0, max_size=4),
       filler=st.lists(st.sampled_from(FILLER), max_size=4), data=st.data())
def test_keywords_between_separators_and_fillers(ctxs, filler, data):
    words = [data.draw(st.sampled_from(KEYWORD_FORMS[c])) for c in ctxs] + filler
    words = data.draw(st.permutations(words))
    seps = [data.draw(SEPS) for _ in range(len(words) + 1)]
    title = seps[0] + "".join(w + s for w, s in zip(words, seps[1:]))
    # "work" followed by a separator-only gap and "out" is not generated: "out" is no filler
    case = data.draw(st.sampled_from([str.lower, str.upper, str.title]))
    assert match_contexts(case(title)) == frozenset(ctxs)


ALL_FORMS = {f for forms in KEYWORD_FORMS.values() for f in forms}


@settings(max_examples=200, deadline=None)
@given(ctx=st.sampled_from(CONTEXTS), prefix=st.text(string.ascii_lowercase, min_size=1, max_size=3),
       data=st.data())
def test_keyword_glued_to_letters_does_not_match(ctx, prefix, data):
    form = data.draw(st.sampled_from(KEYWORD_FORMS[ctx]))
    for word in (prefix + form, form + prefix):
        squeezed_forms = {"".join(ch for i, ch in enumerate(f) if i == 0 or f[i - 1] != ch)
                          for f in ALL_FORMS}
        sq = "".join(ch for i, ch in enumerate(word) if i == 0 or word[i - 1] != ch)
        if sq in squeezed_forms:  # e.g. "party"+"s": itself an accepted form
            continue
        assert match_contexts(word) == frozenset(), word


def test_hostile_titles():
    # lone surrogates and NULs (bytes a dump may hold) are separators, not errors
    assert match_contexts("\ud800party\x00night") == {"party", "night"}
    # a huge title is matched but not cached: a dump of them cannot fill memory
    from ctxpaper.contexts import _match
    _match.cache_clear()
    huge = "a" * 1_000_000 + " chill"
    assert match_contexts(huge) == {"chill"}
    assert _match.cache_info().currsize == 0
    assert match_contexts("chill") == {"chill"} and _match.cache_info().currsize == 1
