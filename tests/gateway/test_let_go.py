"""The filter of let-go order ids: an id it says "no" to was never let go (else a reused id would become a second
order at the exchange); "maybe" for a fresh id is rare (each one costs the new order a journal read)."""

from __future__ import annotations

import random

import pytest

from keyguard.gateway.let_go import LetGoIds


@pytest.mark.parametrize("first_capacity", [1, 1000, 1 << 16])
def test_every_id_let_go_is_found_and_few_fresh_ids_look_let_go(first_capacity: int) -> None:
    rng = random.Random(first_capacity)
    let_go = [hash(("bot-" + str(rng.randrange(8)), f"x-{rng.getrandbits(64):x}")) for _ in range(200_000)]
    ids = LetGoIds(first_capacity=first_capacity)
    assert not ids and 0 not in ids
    for count, key in enumerate(let_go, 1):
        ids.add(key)
        if count in (1, 999, 1000, 1001, 5000):  # across the first levels' edges
            assert all(k in ids for k in let_go[:count])
    assert len(ids) == len(let_go)
    assert all(key in ids for key in let_go), "an id let go must never read as fresh"
    fresh = [hash(("bot-0", f"y-{rng.getrandbits(64):x}")) for _ in range(100_000)]
    false_maybes = sum(key in ids for key in fresh)
    assert false_maybes / len(fresh) < 0.01


def test_negative_and_wide_hashes_are_taken_as_their_64_bits() -> None:
    ids = LetGoIds(first_capacity=10)
    for key in (-1, -(2 ** 63), 2 ** 63 - 1, 0):
        ids.add(key)
        assert key in ids
    assert "not a hash" not in ids
