"""The nearest spelling: which of the names a setting allows is closest to what was typed."""

from __future__ import annotations

MAX_DISTANCE = 2  # the furthest a suggestion may be from what was typed (insertions, deletions, swaps)


def distance(a: str, b: str) -> int:
    """Edit distance with adjacent swaps (optimal string alignment), case-insensitive.

    Hand-written (a dozen lines) rather than a new dependency such as rapidfuzz.
    """
    a, b = a.lower(), b.lower()
    rows = [list(range(len(b) + 1))] + [[i] + [0] * len(b) for i in range(1, len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            rows[i][j] = min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                rows[i][j] = min(rows[i][j], rows[i - 2][j - 2] + 1)
    return rows[-1][-1]


def nearest(word: str, choices: list[str]) -> str | None:
    """The choice closest to ``word``: within edit distance 2 (1 for words of up to 4 letters), else the
    one choice that starts with it (``ckpt`` -> ``ckpt_path``), else the one that it abbreviates, its letters
    in order from the first (``idx`` -> ``index``); None if none."""
    limit = MAX_DISTANCE if len(word) > 4 else 1
    scored = sorted((distance(word, c), i, c) for i, c in enumerate(choices))
    if scored and scored[0][0] <= limit:
        return scored[0][2]
    if len(word) < 3:
        return None
    for found in (
        [c for c in choices if c.lower().startswith(word.lower())],
        [c for c in choices if c[:1].lower() == word[:1].lower() and _in_order(word.lower(), c.lower())],
    ):
        if found:
            return found[0] if len(found) == 1 else None
    return None


def _in_order(letters: str, word: str) -> bool:
    """Whether ``letters`` appear in ``word`` in this order (not necessarily side by side)."""
    rest = iter(word)
    return all(letter in rest for letter in letters)
