"""Say less where meaning allows: words the voice leaves out of a translation that the
captions keep, so translated speech runs shorter than the text (it already runs longer than
the speech it covers; see ``policy.compression``).

Spanish marks person and number on the verb, and a subject pronoun before it is said only for
emphasis or contrast: "porque ellos tienen plumas" is "porque tienen plumas" to a Spanish ear.
Machine translation from English keeps every English pronoun. Only the plural pronouns are
left out here, where the verb's ending says the same ("-n" for ellos/ellas, "-mos" for
nosotros/nosotras); the singular ones are kept, since several Spanish tenses use one form for
"yo" and "él/ella" ("tenía"), and the pronoun is what tells them apart. A pronoun is left out
only at the start of a clause (after punctuation or a subordinating word), never after "y"/"o"
(a joint subject: "Ana y ellos viven") or a preposition ("para ellos")."""

from __future__ import annotations

import re

from babelcall.realtime.clauses import ends_clause

# pronoun -> the ending the next word (its verb) must have
_PRONOUNS: dict[str, dict[str, str]] = {
    "es": {"ellos": "n", "ellas": "n", "nosotros": "mos", "nosotras": "mos"},
}
# words that open a clause in which the pronoun is the subject
_OPENERS: dict[str, frozenset[str]] = {
    "es": frozenset({"que", "porque", "pero", "cuando", "si", "aunque", "pues", "donde",
                     "mientras", "sino"}),
}
# words ending like a verb that are not one
_NOT_VERBS: dict[str, frozenset[str]] = {
    "es": frozenset({"en", "sin", "con", "según", "tan", "bien", "quien", "quién", "aun",
                     "aún", "cuan", "cuán", "también", "mismos"}),
}
_EDGE = re.compile(r"^[¿¡\"'«(]*|[^\w]*$")


def _bare(word: str) -> str:
    return _EDGE.sub("", word).lower()


def condense(text: str, language: str, *, before: str = "") -> str:
    """``text`` as the voice says it in ``language`` (unchanged where no rule applies).
    ``before``: the word said just before ``text`` in the same phrase ("" at its start): a
    piece cut by its word count may start mid-clause ("Ana y" / "ellos viven")."""
    pronouns = _PRONOUNS.get(language)
    if not pronouns:
        return text
    openers, not_verbs = _OPENERS[language], _NOT_VERBS[language]
    words = text.split()
    out: list[str] = []
    for i, word in enumerate(words):
        ending = pronouns.get(word.lower())  # bare: punctuation after it ends the clause
        if ending is not None and i + 1 < len(words):
            prev = out[-1] if out else before
            opens = not prev or ends_clause(prev) or _bare(prev) in openers
            verb = _bare(words[i + 1])
            if opens and verb.endswith(ending) and len(verb) > len(ending) + 1 \
                    and verb not in not_verbs and verb.isalpha():
                if word[0].isupper():  # the sentence now starts with the verb
                    words[i + 1] = words[i + 1][0].upper() + words[i + 1][1:]
                continue
        out.append(word)
    return " ".join(out)
