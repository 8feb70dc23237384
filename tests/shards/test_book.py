"""Book internals: lazy deletion and queue compaction, stale heap entries, price iteration, no cycles."""

from __future__ import annotations

import gc
import random

import pytest

from shards.book import L_QUEUE, NO_ASK, O_ID, Book
from shards.engine import Engine
from shards.protocol import CancelOrder, NewOrder
from tests.shards.engine_harness import BUY, SELL, SPEC, Driver

pytestmark = pytest.mark.usefixtures("engine_core")  # each test runs on every engine core


def resting(order_id: int, side: int, price: int, qty: int = 1, user: int = 1) -> list:
    return [order_id, user, side, price, qty, qty, 0, 0, f"c{order_id}", 1, 1, 0, 0, 0]


def test_cancels_in_the_middle_are_compacted_and_keep_time_priority() -> None:
    # arrange: 100 orders at one price
    book = Book(SPEC)
    orders = [resting(i, SELL, 100) for i in range(1, 101)]
    for o in orders:
        book.rest(o)
    rng = random.Random(3)
    victims = rng.sample(orders, 70)

    # act
    for o in victims:
        book.remove(o)

    # assert
    live = [o[O_ID] for o in orders if o not in victims]
    assert [o[O_ID] for o in book.level_orders(SELL, 100)] == live
    assert len(book.asks[100][L_QUEUE]) < 100  # the dead entries did not all stay
    assert book.asks[100][0] == 30


def test_removing_the_best_level_finds_the_next_best_through_stale_entries() -> None:
    # arrange
    book = Book(SPEC)
    orders = [resting(i, BUY, 100 - i) for i in range(1, 11)]
    for o in orders:
        book.rest(o)
    for o in orders[3:8]:  # remove levels below the top: they stay in the heap, stale
        book.remove(o)

    # act
    for o in orders[:3]:
        book.remove(o)

    # assert
    assert book.best_bid == 100 - 9
    assert list(book.prices(BUY)) == [91, 90]


def test_heap_is_rebuilt_when_stale_entries_pile_up() -> None:
    # arrange
    book = Book(SPEC)
    book.rest(resting(1, SELL, 10))

    # act: open and close 1 000 levels behind the best one
    for i in range(2, 1002):
        o = resting(i, SELL, 1000 + i)
        book.rest(o)
        book.remove(o)

    # assert
    assert len(book.ask_heap) <= 2 * len(book.asks) + 64 + 1
    assert book.best_ask == 10 and list(book.prices(SELL)) == [10]


def test_prices_iterates_best_first_with_duplicates_and_stale_entries() -> None:
    # arrange
    book = Book(SPEC)
    rng = random.Random(5)
    live: dict[int, list] = {}
    for i in range(1, 400):
        price = rng.randint(1, 60)
        o = resting(i, SELL, price)
        book.rest(o)
        live[i] = o
        if rng.random() < 0.5:
            victim = live.pop(rng.choice(list(live)))
            book.remove(victim)

    # act
    prices = list(book.prices(SELL))

    # assert
    assert prices == sorted({o[3] for o in live.values()})
    assert book.best_ask == (prices[0] if prices else NO_ASK)
    assert book.depth(SELL, 3) == tuple((p, sum(o[4] for o in live.values() if o[3] == p)) for p in prices[:3])


def test_engine_creates_no_reference_cycles() -> None:
    # arrange
    d = Driver()
    gc.collect()
    gc.disable()
    try:
        # act
        for i in range(300):
            d.sell(1 + i % 3, 100 + i % 5, user=i % 4)
            d.buy(1 + i % 4, 99 + i % 7, user=(i + 1) % 4)
            if i % 3 == 0:
                d.cancel(i, user=i % 4)
        d.cancel_all(user=1)
        garbage_while_alive = gc.collect()
        del d

        # assert
        assert garbage_while_alive == 0
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_deep_book_cancel_and_match_touch_only_their_orders() -> None:
    # arrange: 100 000 resting orders over 2 000 levels
    engine = Engine([SPEC])
    for i in range(100_000):
        side = 1 + i % 2
        price = 10_000 - 1 - i % 1000 if side == 1 else 10_000 + 1 + i % 1000
        engine.apply(NewOrder(1, 1 + i % 97, f"c{i}", side, 1, 1, price, 1 + i % 5, 0, 0, 1))
    engine.take_events()
    book = engine.book(1)

    # act
    engine.apply(CancelOrder(1, 1 + 50_000 % 97, 50_001, "", 2))
    result = engine.apply(NewOrder(1, 5000, "sweep", BUY, 2, 1, 0, 300, 0, 0, 3))

    # assert
    assert 50_001 not in book.orders
    assert len(result.fills) > 1  # type: ignore[union-attr]
    assert book.best_ask > 10_001
    assert len(book.orders) < 100_000
