"""Unguessable, typo-proof codes for coupons and gift cards (pure: no I/O, no clock).

Alphabet: the 29 symbols `23456789ABCDEFGHJKMNPQRSTVWXY` — Crockford base32 without the
ambiguous 0/O, 1/I/L, U (and Z, the twin of 2). 29 is prime, which is what makes the check
character exact: it is chosen so that `sum(value[i] * weight[i]) % 29 == 0` over the whole
code, with weights `1..28` cycling. A substitution changes the sum by `(a - b) * w`, and an
adjacent transposition by `(a - b) * (w[i] - w[i+1])`; neither factor is a multiple of 29,
so every single substitution and every adjacent transposition is caught before any look-up.
"""

from __future__ import annotations

import math
import secrets

import numpy as np

from fideliza.core.errors import ValidationError

ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXY"
BASE = len(ALPHABET)  # 29, prime
BITS_PER_CHAR = math.log2(BASE)
MIN_BITS = 60
MAX_CODE_LENGTH = 64
SEPARATOR = "-"

_VALUE = {char: value for value, char in enumerate(ALPHABET)}
# What a person may type instead: lower case is handled by upper(); these are look-alikes whose
# twin is in the alphabet. 0/O/1/I/L have no twin left, so they stay errors.
_LOOK_ALIKES = str.maketrans({"Z": "2", "U": "V"})
_SEPARATORS = str.maketrans("", "", " -_.\t\n")


def payload_length(bits: int) -> int:
    """The number of random characters needed for at least `bits` bits of randomness."""
    if bits < MIN_BITS:
        raise ValidationError(f"must be at least {MIN_BITS}", field="bits")
    return math.ceil(bits / BITS_PER_CHAR)


def _weight(position: int) -> int:
    return position % (BASE - 1) + 1  # 1..28: never 0 mod 29, neighbours always differ


def _check_value(values: list[int]) -> int:
    """The value that makes the weighted sum of `values` + check a multiple of BASE."""
    total = sum(value * _weight(position) for position, value in enumerate(values))
    weight = _weight(len(values))
    return (-total * pow(weight, -1, BASE)) % BASE


def check_character(body: str) -> str:
    """The check character of `body` (normalized, alphabet characters only)."""
    return ALPHABET[_check_value([_VALUE[char] for char in body])]


def clean_prefix(prefix: str, *, field: str = "prefix") -> str:
    """The prefix upper-cased without separators, or ValidationError if outside the alphabet."""
    # No look-alike mapping here: a prefix typed as SUMMER must not silently become SVMMER.
    cleaned = prefix.upper().translate(_SEPARATORS)
    if any(char not in _VALUE for char in cleaned):
        raise ValidationError(
            f"may only use the characters {ALPHABET} (no 0, O, 1, I, L, U, Z)", field=field
        )
    return cleaned


def format_code(normalized: str, *, group: int = 4, prefix_length: int = 0) -> str:
    """Renders a normalized code for people: prefix, then groups of `group` joined by '-'."""
    if group < 0:
        raise ValidationError("must not be negative", field="group")
    prefix, rest = normalized[:prefix_length], normalized[prefix_length:]
    if group:
        rest = SEPARATOR.join(rest[start : start + group] for start in range(0, len(rest), group))
    return f"{prefix}{SEPARATOR}{rest}" if prefix else rest


def new_code(*, bits: int = 65, group: int = 4, prefix: str = "") -> str:
    """A new random code with a check character, formatted for people (e.g. `7KQM-…`)."""
    cleaned_prefix = clean_prefix(prefix)
    length = payload_length(bits)
    payload = "".join(secrets.choice(ALPHABET) for _ in range(length))
    body = cleaned_prefix + payload
    return format_code(body + check_character(body), group=group, prefix_length=len(cleaned_prefix))


def normalize(code: str) -> str:
    """Upper-cases, strips spaces and separators and maps look-alikes (`z` → `2`, `u` → `V`)."""
    return code.upper().translate(_SEPARATORS).translate(_LOOK_ALIKES)


def is_well_formed(normalized: str) -> bool:
    """Tells whether a normalized code uses the alphabet and ends with its check character."""
    if not 2 <= len(normalized) <= MAX_CODE_LENGTH:
        return False
    values = [_VALUE.get(char, -1) for char in normalized]
    if -1 in values:
        return False
    total = sum(value * _weight(position) for position, value in enumerate(values))
    return total % BASE == 0


def check(code: str) -> str:
    """Returns the normalized code, or raises ValidationError(`malformed_code`) on a typo."""
    normalized = normalize(code)
    if not is_well_formed(normalized):
        raise ValidationError(
            "is not a valid code (check the characters typed)", field="code", code="malformed_code"
        )
    return normalized


def new_codes(n: int, *, bits: int = 65, group: int = 4, prefix: str = "") -> list[str]:
    """`n` distinct new codes at once (vectorized, ~1 µs each), formatted like `new_code`."""
    cleaned_prefix = clean_prefix(prefix)
    rows = _unique_rows(n, payload_length(bits), cleaned_prefix, keep_order=True)
    return _format_rows(rows, group=group, prefix=cleaned_prefix)


def new_sorted_codes(n: int, *, bits: int = 65, prefix: str = "") -> list[str]:
    """`n` distinct new codes, normalized and in sorted order: what a bulk insert wants.

    Sorted keys land at the end of the unique index's B-tree pages instead of all over it,
    which makes storing a million codes several times faster.
    """
    cleaned_prefix = clean_prefix(prefix)
    rows = _unique_rows(n, payload_length(bits), cleaned_prefix, keep_order=False)
    width = rows.shape[1]
    text = rows.tobytes().decode("ascii")
    return [text[start : start + width] for start in range(0, len(text), width)]


def _random_digits(count: int) -> np.ndarray:
    """`count` uniform values in [0, BASE) from the OS CSPRNG (rejection sampling, no bias)."""
    limit = 256 - 256 % BASE  # 232: bytes below it map uniformly onto 0..28
    digits = np.empty(0, dtype=np.uint8)
    while digits.size < count:
        needed = count - digits.size
        raw = np.frombuffer(secrets.token_bytes(needed + needed // 8 + 16), dtype=np.uint8)
        digits = np.concatenate([digits, raw[raw < limit] % BASE])
    return digits[:count]


_SYMBOLS = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)


def _random_rows(n: int, length: int, prefix: str) -> np.ndarray:
    """`n` normalized codes as rows of ASCII bytes: prefix, `length` random symbols, check."""
    prefix_values = np.array([_VALUE[char] for char in prefix], dtype=np.int32)
    payload = _random_digits(n * length).reshape(n, length).astype(np.int32)
    body = np.concatenate([np.broadcast_to(prefix_values, (n, len(prefix))), payload], axis=1)
    weights = np.array([_weight(position) for position in range(body.shape[1])], dtype=np.int32)
    inverse = pow(_weight(body.shape[1]), -1, BASE)
    checks = (-(body @ weights) * inverse) % BASE
    return np.ascontiguousarray(_SYMBOLS[np.concatenate([body, checks[:, None]], axis=1)])


def _unique_rows(n: int, length: int, prefix: str, *, keep_order: bool) -> np.ndarray:
    """`n` distinct random rows; sorted unless `keep_order` (then in drawing order)."""
    if n < 0:
        raise ValidationError("must not be negative", field="count")
    width = len(prefix) + length + 1
    rows = np.empty((0, width), dtype=np.uint8)
    while rows.shape[0] < n:
        # Duplicates are astronomically rare at >= 60 bits, but distinctness is promised:
        # drop them and draw again for the missing ones.
        rows = np.concatenate([rows, _random_rows(n - rows.shape[0], length, prefix)])
        keys = rows.view(f"S{width}").ravel()
        if keep_order:
            _, first = np.unique(keys, return_index=True)
            first.sort()
            rows = rows[first]
        else:  # a plain sort is much cheaper than an argsort
            rows = np.unique(keys).view(np.uint8).reshape(-1, width)
    return rows


def _format_rows(rows: np.ndarray, *, group: int, prefix: str) -> list[str]:
    n = rows.shape[0]
    chars = rows[:, len(prefix) :]
    if group:
        columns = [chars[:, start : start + group] for start in range(0, chars.shape[1], group)]
        dash = np.full((n, 1), ord(SEPARATOR), dtype=np.uint8)
        pieces: list[np.ndarray] = []
        for index, column in enumerate(columns):
            if index:
                pieces.append(dash)
            pieces.append(column)
        chars = np.concatenate(pieces, axis=1)
    head = f"{prefix}{SEPARATOR}" if prefix else ""
    width = chars.shape[1]
    text = np.ascontiguousarray(chars).tobytes().decode("ascii")
    found = [text[start : start + width] for start in range(0, len(text), width)]
    return [head + code for code in found] if head else found
