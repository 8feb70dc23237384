"""A deliberately simple order book, the model the engine is checked against.

One flat list of resting orders, scanned and sorted afresh for every command:
slow and obviously right. It follows the rules of API.md as the engine
documents them (shards/engine.py), written independently: FOK is decided by
running the match on a copy, not by a separate feasibility walk.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

BUY, SELL = 1, 2
LIMIT, MARKET, LIMIT_MAKER = 1, 2, 3
GTC, IOC, FOK = 1, 2, 3
NONE, EXPIRE_TAKER, EXPIRE_MAKER, EXPIRE_BOTH = 0, 1, 2, 3
NEW, PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED, EXPIRED_IN_MATCH = 1, 2, 3, 4, 6, 7


@dataclass
class RefOrder:
    order_id: int
    user: int
    coid: str
    side: int
    price: int
    orig: int
    executed: int = 0
    gone: bool = False

    @property
    def open(self) -> int:
        return self.orig - self.executed


@dataclass
class RefOutcome:
    """What one command did: a rejection code, or a status with the taker's fills (price, qty, maker id)."""

    code: int = 0
    status: int = 0
    executed: int = 0
    fills: list[tuple[int, int, int]] = field(default_factory=list)
    expired_makers: list[int] = field(default_factory=list)
    order_ids: list[int] = field(default_factory=list)  # cancel-all


@dataclass
class ReferenceBook:
    min_price: int
    max_price: int
    min_qty: int
    max_qty: int
    resting: list[RefOrder] = field(default_factory=list)  # arrival order
    next_id: int = 1

    # --- reading -------------------------------------------------------------------

    def depth(self, side: int) -> list[tuple[int, int]]:
        totals: dict[int, int] = {}
        for o in self.resting:
            if o.side == side:
                totals[o.price] = totals.get(o.price, 0) + o.open
        return sorted(totals.items(), reverse=(side == BUY))

    def find(self, user: int, order_id: int, coid: str) -> RefOrder | None:
        for o in self.resting:
            if o.user == user and (o.order_id == order_id if order_id else o.coid == coid):
                return o
        return None

    # --- commands --------------------------------------------------------------------

    def new_order(self, user, coid, side, otype, tif, price, qty, quote_qty, stp) -> RefOutcome:
        if otype == MARKET:
            if price or (qty and quote_qty) or (not qty and quote_qty <= 0):
                return RefOutcome(code=-1100 if price or (qty and quote_qty) else -1013)
            if qty and not self.min_qty <= qty <= self.max_qty:
                return RefOutcome(code=-1013)
        else:
            if quote_qty:
                return RefOutcome(code=-1100)
            if not (self.min_price <= price <= self.max_price and self.min_qty <= qty <= self.max_qty):
                return RefOutcome(code=-1013)
        if any(o.user == user and o.coid == coid for o in self.resting):
            return RefOutcome(code=-2010)
        opposite = [o for o in self.resting if o.side != side]
        crosses = otype == MARKET or any((o.price <= price) if side == BUY else (o.price >= price) for o in opposite)
        if otype == LIMIT_MAKER and crosses:
            return RefOutcome(code=-2010)
        if otype == LIMIT and tif == FOK:
            trial = copy.deepcopy(self)
            if trial._match(user, side, otype, price, qty, quote_qty, stp, -1)[0] != 0:
                return RefOutcome(code=-2010)
        order_id = self.next_id
        self.next_id += 1
        remaining, out, stopped_by_stp, out_of_budget = self._match(
            user, side, otype, price, qty, quote_qty, stp, order_id
        )
        if stopped_by_stp:
            out.status = EXPIRED_IN_MATCH
        elif quote_qty:
            out.status = FILLED if out.executed and out_of_budget else EXPIRED
        elif remaining == 0:
            out.status = FILLED
        elif otype in (LIMIT, LIMIT_MAKER) and (tif == GTC or otype == LIMIT_MAKER):
            self.resting.append(RefOrder(order_id, user, coid, side, price, qty, qty - remaining))
            out.status = PARTIALLY_FILLED if out.executed else NEW
        else:
            out.status = EXPIRED
        return out

    def _match(self, user, side, otype, price, qty, quote_qty, stp, taker_id):
        out = RefOutcome()
        remaining = qty if not quote_qty else 10**18
        budget = quote_qty
        stopped_by_stp = out_of_budget = False

        def crosses(o: RefOrder) -> bool:
            if otype == MARKET:
                return True
            return o.price <= price if side == BUY else o.price >= price

        while remaining > 0 and not stopped_by_stp and not out_of_budget:
            makers = [o for o in self.resting if o.side != side and crosses(o)]
            if not makers:
                break
            best_price = min(o.price for o in makers) if side == BUY else max(o.price for o in makers)
            maker = next(o for o in makers if o.price == best_price)  # the oldest at the best price
            if quote_qty and budget // best_price == 0:
                out_of_budget = True
                break
            if stp != NONE and maker.user == user:
                if stp == EXPIRE_TAKER:
                    stopped_by_stp = True
                    break
                self.resting.remove(maker)
                out.expired_makers.append(maker.order_id)
                if stp == EXPIRE_BOTH:
                    stopped_by_stp = True
                continue
            fill = min(maker.open, remaining)
            if quote_qty:
                fill = min(fill, budget // best_price)
                budget -= fill * best_price
                if budget // best_price == 0:
                    out_of_budget = True
            maker.executed += fill
            remaining -= fill
            out.executed += fill
            out.fills.append((best_price, fill, maker.order_id))
            if maker.open == 0:
                self.resting.remove(maker)
        return remaining if not quote_qty else 0, out, stopped_by_stp, out_of_budget

    def cancel(self, user: int, order_id: int, coid: str) -> RefOutcome:
        order = self.find(user, order_id, coid)
        if order is None:
            return RefOutcome(code=-2013)
        self.resting.remove(order)
        return RefOutcome(status=CANCELED, executed=order.executed)

    def amend(self, user: int, order_id: int, coid: str, new_qty: int) -> RefOutcome:
        order = self.find(user, order_id, coid)
        if order is None:
            return RefOutcome(code=-2013)
        if not order.executed < new_qty < order.orig:
            return RefOutcome(code=-1013)
        order.orig = new_qty
        return RefOutcome(status=PARTIALLY_FILLED if order.executed else NEW, executed=order.executed)

    def cancel_all(self, user: int) -> RefOutcome:
        mine = sorted((o for o in self.resting if o.user == user), key=lambda o: o.order_id)
        if not mine:
            return RefOutcome(code=-2011)
        for o in mine:
            self.resting.remove(o)
        return RefOutcome(status=CANCELED, order_ids=[o.order_id for o in mine])
