"""Where committed target text is cut for synthesis (pure)."""

import pytest

from babelcall.realtime.clauses import ClauseCutter


def test_cuts_at_clause_ends():
    c = ClauseCutter(max_words=8, first_max_words=8)
    assert c.push("Sin embargo, debido a los") == ["Sin embargo,"]
    assert c.pending == "debido a los"
    assert c.push("canales lentos. Los estilos") == ["debido a los canales lentos."]
    assert c.push("cambian", final=True) == ["Los estilos cambian"]
    assert c.pending == ""


def test_first_piece_of_a_phrase_is_short_then_longer_pieces():
    c = ClauseCutter(max_words=6, first_max_words=3)
    text = "uno dos tres cuatro cinco seis siete ocho nueve diez"
    assert c.push(text) == ["uno dos tres", "cuatro cinco seis siete ocho nueve"]
    assert c.push("", final=True) == ["diez"]
    # the next phrase starts short again
    assert c.push("a b c d e f g") == ["a b c"]
    assert c.pending == "d e f g"


def test_punctuation_only_pieces_are_not_spoken():
    c = ClauseCutter()
    assert c.push("... ,", final=True) == []


def test_bad_limits():
    with pytest.raises(ValueError):
        ClauseCutter(max_words=1)


def test_preview_says_what_push_would_cut_and_changes_nothing():
    c = ClauseCutter(max_words=4, first_max_words=2)
    assert c.push("uno dos tres") == ["uno dos"]
    more = "cuatro cinco seis siete ocho nueve"
    assert c.preview(more, final=True) == ["tres cuatro cinco seis", "siete ocho nueve"]
    assert c.pending == "tres"  # untouched
    assert c.push(more, final=True) == ["tres cuatro cinco seis", "siete ocho nueve"]


def test_a_tiny_last_piece_joins_the_one_before():
    c = ClauseCutter(max_words=4, first_max_words=4)
    assert c.push("uno dos tres cuatro cinco", final=True) == ["uno dos tres cuatro cinco"]
    assert c.push("uno dos tres cuatro cinco seis siete", final=True) == [
        "uno dos tres cuatro", "cinco seis siete"]
    assert c.push("fin", final=True) == ["fin"]  # alone in its phrase: nothing to join


def test_french_gets_longer_pieces():
    from babelcall.realtime.clauses import clause_words

    assert clause_words("fr") == (12, 8) and clause_words("es") == (8, 5)


def test_flush_voices_the_waiting_words_only_when_there_are_enough():
    c = ClauseCutter(max_words=8, first_max_words=5)
    assert c.push("Fácil logra") == []
    assert c.flush(3) is None                 # two words: keep waiting
    assert c.push("es") == []
    assert c.flush(3) == "Fácil logra es"     # the listener would wait: voice them now
    assert c.pending == ""
    # the next piece is no longer the phrase's first: it takes the longer limit
    assert c.push("un romántico y fascinante ciudad de") == []
    assert c.push("Sintra, que") == ["un romántico y fascinante ciudad de Sintra,"]


def test_early_words_are_more_for_french():
    from babelcall.realtime.clauses import early_words

    assert early_words("es") == 3 and early_words("fr") > early_words("es")


@pytest.mark.parametrize("text,pieces", [
    # full at 4 words, the clause ends 1 or 2 words on: they go with it
    ("uno dos tres cuatro cinco.", ["uno dos tres cuatro cinco."]),
    ("uno dos tres cuatro cinco seis, siete", ["uno dos tres cuatro cinco seis,"]),
    # 3 words on: too far, cut by the count
    ("uno dos tres cuatro cinco seis siete.", ["uno dos tres cuatro", "cinco seis siete."]),
    # the words after the limit are not here yet: cut by the count
    ("uno dos tres cuatro cinco", ["uno dos tres cuatro"]),
])
def test_a_full_piece_takes_the_one_or_two_words_that_end_its_clause(text, pieces):
    c = ClauseCutter(max_words=4, first_max_words=4)
    assert c.push(text) == pieces
