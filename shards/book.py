"""One symbol's order book: resting orders, price levels, best prices, counters.

The book owns the data structures and the primitives that keep them
consistent; the matching rules and the events live in ``shards/engine.py``,
which reads and writes these structures directly on its hot paths (the
layouts below are part of this module's contract with the engine).

Layout (plain lists and dicts: cheap to build, no reference cycles, so a
shard may run with the cyclic garbage collector off):

- A resting order is a list indexed by the ``O_*`` constants. ``O_OPEN`` is
  the quantity still open; 0 marks an order that has left the book.
- A price level is a list ``[qty, dead, queue]``: total open quantity, the
  number of departed orders still sitting in the queue, and a ``deque`` of
  orders in time priority. A cancel from the middle of a queue only zeroes the
  order's ``O_OPEN`` (lazy deletion, O(1)); matching drops such entries when
  they reach the front, and a queue that is more than half dead is compacted
  (amortised O(1)). A level whose quantity reaches 0 is removed at once.
- ``bids``/``asks`` map price -> level. The best prices are cached in
  ``best_bid`` (0 when empty) and ``best_ask`` (``NO_ASK`` when empty), so
  "does this order cross?" is one comparison. Two heaps (bids negated) find
  the next best price when the best level goes; levels removed below the top
  stay in the heaps as stale entries (lazy deletion) and a heap that grows
  past twice the number of levels is rebuilt.
- ``orders`` maps order id -> order; ``users`` maps user id -> {client order
  id -> order}, holding the user's open orders in order-id order (dicts keep
  insertion order and ids grow), which serves the duplicate client id rule,
  cancels by client id, cancel-all and open-order queries without a scan.

Never does I/O, never reads a clock: times come in with the commands.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from heapq import heapify, heappop, heappush

from shards.protocol import OrderStatus, OrderView, Side, SymbolSpec

# resting order fields
O_ID = 0
O_USER = 1
O_SIDE = 2
O_PRICE = 3
O_OPEN = 4  # lots still open; 0 = gone from the book
O_ORIG = 5  # original quantity (after amends)
O_EXEC = 6  # lots executed
O_QUOTE = 7  # cumulative quote (price * lots)
O_COID = 8
O_TYPE = 9
O_TIF = 10
O_STP = 11
O_TIME = 12  # ms, accepted
O_UPDATE = 13  # ms, last change

# price level fields
L_QTY = 0
L_DEAD = 1
L_QUEUE = 2

NO_ASK = 1 << 62  # best_ask when the ask side is empty (above any price)
COMPACT_MIN_DEAD = 32
HEAP_SLACK = 64

_BUY = Side.BUY.value
_NEW = OrderStatus.NEW.value
_PARTIAL = OrderStatus.PARTIALLY_FILLED.value
_tuple_new = tuple.__new__


class Book:
    """All state of one symbol. Attributes are read and written by the engine."""

    __slots__ = (
        "spec",
        "symbol_id",
        "min_price",
        "max_price",
        "min_qty",
        "max_qty",
        "bids",
        "asks",
        "bid_heap",
        "ask_heap",
        "best_bid",
        "best_ask",
        "orders",
        "users",
        "next_order_id",
        "next_trade_id",
        "depth_seq",
    )

    def __init__(self, spec: SymbolSpec) -> None:
        self.spec = spec
        self.symbol_id = spec.symbol_id
        self.min_price = spec.min_price
        self.max_price = spec.max_price
        self.min_qty = spec.min_qty
        self.max_qty = spec.max_qty
        self.bids: dict[int, list] = {}
        self.asks: dict[int, list] = {}
        self.bid_heap: list[int] = []  # negated prices
        self.ask_heap: list[int] = []
        self.best_bid = 0
        self.best_ask = NO_ASK
        self.orders: dict[int, list] = {}
        self.users: dict[int, dict[str, list]] = {}
        self.next_order_id = 1
        self.next_trade_id = 1
        self.depth_seq = 0

    # --- resting ---------------------------------------------------------------

    def rest(self, order: list) -> int:
        """Put ``order`` (open quantity > 0) at the back of its level; return the level's new quantity."""
        price = order[O_PRICE]
        side = order[O_SIDE]
        level = (self.bids if side == _BUY else self.asks).get(price)
        if level is None:
            self.new_level(side, price, order)
            level_qty = order[O_OPEN]
        else:
            level_qty = level[L_QTY] = level[L_QTY] + order[O_OPEN]
            level[L_QUEUE].append(order)
        self.orders[order[O_ID]] = order
        by_coid = self.users.get(order[O_USER])
        if by_coid is None:
            self.users[order[O_USER]] = {order[O_COID]: order}
        else:
            by_coid[order[O_COID]] = order
        return level_qty

    def new_level(self, side: int, price: int, order: list) -> None:
        """Open the level ``price`` of ``side`` (not present) with ``order`` alone in it."""
        level = [order[O_OPEN], 0, deque((order,))]
        if side == _BUY:
            self.bids[price] = level
            heap = self.bid_heap
            heappush(heap, -price)
            if len(heap) > 2 * len(self.bids) + HEAP_SLACK:
                self._rebuild_heaps()
            if price > self.best_bid:
                self.best_bid = price
        else:
            self.asks[price] = level
            heap = self.ask_heap
            heappush(heap, price)
            if len(heap) > 2 * len(self.asks) + HEAP_SLACK:
                self._rebuild_heaps()
            if price < self.best_ask:
                self.best_ask = price

    def unlink(self, order: list) -> None:
        """Forget ``order`` in the id and user indexes (its level is handled by the caller)."""
        del self.orders[order[O_ID]]
        users = self.users
        by_coid = users[order[O_USER]]
        del by_coid[order[O_COID]]
        if not by_coid:
            del users[order[O_USER]]

    def remove(self, order: list) -> int:
        """Take a resting order out of the book wherever it sits; return its level's new quantity."""
        price = order[O_PRICE]
        side = order[O_SIDE]
        level = (self.bids if side == _BUY else self.asks)[price]
        left = level[L_QTY] - order[O_OPEN]
        order[O_OPEN] = 0
        if left:
            level[L_QTY] = left
            dead = level[L_DEAD] = level[L_DEAD] + 1
            if dead >= COMPACT_MIN_DEAD and 2 * dead > len(level[L_QUEUE]):
                queue = level[L_QUEUE]
                live = [o for o in queue if o[O_OPEN]]
                queue.clear()
                queue.extend(live)
                level[L_DEAD] = 0
        else:
            self.drop_level(side, price)
        del self.orders[order[O_ID]]
        users = self.users
        by_coid = users[order[O_USER]]
        del by_coid[order[O_COID]]
        if not by_coid:
            del users[order[O_USER]]
        return left

    def reduce(self, order: list, by: int) -> int:
        """Lower a resting order's quantity by ``by`` (< its open quantity) in place; return the level's quantity."""
        order[O_ORIG] -= by
        order[O_OPEN] -= by
        level = (self.bids if order[O_SIDE] == _BUY else self.asks)[order[O_PRICE]]
        level[L_QTY] -= by
        return level[L_QTY]

    def find(self, user_id: int, order_id: int, coid: str) -> list | None:
        """The user's open order by id (when non-zero) or client order id; None for anyone else's."""
        if order_id:
            order = self.orders.get(order_id)
            return order if order is not None and order[O_USER] == user_id else None
        by_coid = self.users.get(user_id)
        return None if by_coid is None else by_coid.get(coid)

    def drop_level(self, side: int, price: int) -> None:
        """Remove an empty level and, when it was the best, find the next best price."""
        if side == _BUY:
            bids = self.bids
            del bids[price]
            if price == self.best_bid:
                heap = self.bid_heap
                while heap and -heap[0] not in bids:
                    heappop(heap)
                self.best_bid = -heap[0] if heap else 0
        else:
            asks = self.asks
            del asks[price]
            if price == self.best_ask:
                heap = self.ask_heap
                while heap and heap[0] not in asks:
                    heappop(heap)
                self.best_ask = heap[0] if heap else NO_ASK

    def _rebuild_heaps(self) -> None:
        self.bid_heap = [-p for p in self.bids]
        heapify(self.bid_heap)
        self.ask_heap = list(self.asks)
        heapify(self.ask_heap)

    # --- reading ---------------------------------------------------------------

    def prices(self, side: int) -> Iterator[int]:
        """Prices of the live levels of ``side``, best first, lazily: O(k log k) for the first k."""
        if side == _BUY:
            heap, levels, sign = self.bid_heap, self.bids, -1
        else:
            heap, levels, sign = self.ask_heap, self.asks, 1
        size = len(heap)
        if not size:
            return
        seen: set[int] = set()
        frontier = [(heap[0], 0)]
        while frontier:
            key, i = heappop(frontier)
            child = 2 * i + 1
            if child < size:
                heappush(frontier, (heap[child], child))
                if child + 1 < size:
                    heappush(frontier, (heap[child + 1], child + 1))
            price = sign * key
            if price in levels and price not in seen:
                seen.add(price)
                yield price

    def depth(self, side: int, limit: int) -> tuple[tuple[int, int], ...]:
        """Top ``limit`` levels of ``side`` as (price, qty), best first."""
        levels = self.bids if side == _BUY else self.asks
        out = []
        if limit > 0:
            for price in self.prices(side):
                out.append((price, levels[price][L_QTY]))
                if len(out) == limit:
                    break
        return tuple(out)

    def level_orders(self, side: int, price: int) -> list[list]:
        """The live orders of one level in time priority (for tests and snapshots)."""
        levels = self.bids if side == _BUY else self.asks
        level = levels.get(price)
        return [] if level is None else [o for o in level[L_QUEUE] if o[O_OPEN]]

    def resting_in_priority(self) -> Iterator[list]:
        """Every resting order: bids best first, then asks best first, each level in time priority."""
        for side in (Side.BUY, Side.SELL):
            for price in self.prices(side):
                yield from self.level_orders(side, price)


def live_status(order: list) -> int:
    """Status of an order still on the book."""
    return _PARTIAL if order[O_EXEC] else _NEW


def view(symbol_id: int, order: list, status: int) -> OrderView:
    """The API view of a resting (or just removed) order with ``status``."""
    return _tuple_new(
        OrderView,
        (
            symbol_id, order[O_ID], order[O_COID], order[O_USER], order[O_SIDE], order[O_TYPE], order[O_TIF],
            order[O_STP], order[O_PRICE], order[O_ORIG], order[O_EXEC], order[O_QUOTE], 0, status, order[O_TIME],
            order[O_UPDATE], order[O_TIME],
        ),
    )  # fmt: skip
