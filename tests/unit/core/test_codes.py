"""Codes: alphabet, randomness, check character (every substitution and transposition caught)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fideliza.core import codes
from fideliza.core.errors import ValidationError

AMBIGUOUS = set("0O1ILU")


def test_alphabet_has_no_ambiguous_characters_and_a_prime_size() -> None:
    assert not AMBIGUOUS & set(codes.ALPHABET)
    assert len(set(codes.ALPHABET)) == codes.BASE == 29
    assert all(codes.BASE % divisor for divisor in range(2, codes.BASE))


def test_new_code_has_at_least_the_requested_randomness() -> None:
    code = codes.check(codes.new_code(bits=65))
    payload = len(code) - 1  # minus the check character
    assert payload * math.log2(codes.BASE) >= 65
    assert codes.payload_length(60) * math.log2(codes.BASE) >= 60


def test_bits_below_60_are_refused() -> None:
    with pytest.raises(ValidationError) as error:
        codes.new_code(bits=40)
    assert error.value.field == "bits"


def test_new_code_is_grouped_and_prefixed() -> None:
    code = codes.new_code(prefix="xmas", group=4)
    head, *groups = code.split("-")
    assert head == "XMAS"
    assert all(len(group) == 4 for group in groups[:-1])
    assert codes.check(code).startswith("XMAS")


@pytest.mark.parametrize("prefix", ["SUMMER", "GOLD", "B1G"])
def test_prefix_outside_the_alphabet_is_refused_with_its_field(prefix: str) -> None:
    with pytest.raises(ValidationError) as error:
        codes.new_code(prefix=prefix)
    assert error.value.field == "prefix"


def test_normalize_accepts_lower_case_spaces_and_look_alikes() -> None:
    code = codes.new_code(group=0)
    typed = " ".join(code.lower()).replace("2", "z").replace("v", "u")
    assert codes.check(typed) == code


@pytest.mark.parametrize("bad", ["", "A", "ABCD-EFGH-0", "ABC!", "X" * 80])
def test_check_rejects_malformed_codes_with_a_stable_code(bad: str) -> None:
    with pytest.raises(ValidationError) as error:
        codes.check(bad)
    assert (error.value.code, error.value.field) == ("malformed_code", "code")


def test_new_codes_are_distinct_well_formed_and_formatted_like_new_code() -> None:
    batch = codes.new_codes(5000, prefix="AB")
    assert len(set(batch)) == 5000
    assert all(codes.check(code).startswith("AB") for code in batch)
    assert {len(code) for code in batch} == {len(codes.new_code(prefix="AB"))}
    assert codes.new_codes(0) == []


def test_new_codes_use_every_symbol_evenly() -> None:
    counts: dict[str, int] = {}
    for code in codes.new_codes(20_000, group=0):
        for char in code[:-1]:
            counts[char] = counts.get(char, 0) + 1
    assert set(counts) == set(codes.ALPHABET)
    expected = sum(counts.values()) / codes.BASE
    assert all(abs(count - expected) < 0.05 * expected for count in counts.values())


bodies = st.text(alphabet=codes.ALPHABET, min_size=1, max_size=40)


@given(bodies, st.data())
def test_any_single_substitution_is_caught(body: str, data: st.DataObject) -> None:
    code = body + codes.check_character(body)
    position = data.draw(st.integers(0, len(code) - 1))
    other = data.draw(st.sampled_from(codes.ALPHABET).filter(lambda char: char != code[position]))
    typo = code[:position] + other + code[position + 1 :]
    assert codes.is_well_formed(code)
    assert not codes.is_well_formed(typo)


@given(bodies, st.data())
def test_any_adjacent_transposition_is_caught(body: str, data: st.DataObject) -> None:
    code = body + codes.check_character(body)
    position = data.draw(st.integers(0, len(code) - 2))
    first, second = code[position], code[position + 1]
    typo = code[:position] + second + first + code[position + 2 :]
    assert codes.is_well_formed(typo) == (first == second)


def test_exhaustively_every_typo_of_one_code_is_caught() -> None:
    code = codes.check(codes.new_code())
    for position in range(len(code)):
        for other in codes.ALPHABET.replace(code[position], ""):
            assert not codes.is_well_formed(code[:position] + other + code[position + 1 :])


def test_new_sorted_codes_are_normalized_distinct_sorted_and_well_formed() -> None:
    batch = codes.new_sorted_codes(5000, prefix="AB")
    assert batch == sorted(set(batch)) and len(batch) == 5000
    assert all(codes.check(code) == code and code.startswith("AB") for code in batch)
    assert codes.new_sorted_codes(0) == []
