"""Small builders for engine tests: commands with defaults, and a driver that keeps time and ids."""

from __future__ import annotations

from dataclasses import dataclass, field

from shards.engine import Engine
from shards.protocol import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Event,
    NewOrder,
    OrderType,
    QueryDepth,
    Result,
    Side,
    StpMode,
    SymbolSpec,
    TimeInForce,
    TradeEvent,
)

SPEC = SymbolSpec(symbol_id=1, symbol="TEST", min_price=1, max_price=1_000_000, min_qty=1, max_qty=1_000_000)
BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET, LIMIT_MAKER = OrderType.LIMIT, OrderType.MARKET, OrderType.LIMIT_MAKER
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
NONE, EXPIRE_TAKER, EXPIRE_MAKER, EXPIRE_BOTH = (
    StpMode.NONE,
    StpMode.EXPIRE_TAKER,
    StpMode.EXPIRE_MAKER,
    StpMode.EXPIRE_BOTH,
)


def order(
    side: int,
    qty: int,
    price: int = 0,
    *,
    user: int = 1,
    coid: str = "",
    order_type: int = LIMIT,
    tif: int = GTC,
    quote_qty: int = 0,
    stp: int = NONE,
    ts: int = 1_000,
    symbol_id: int = 1,
) -> NewOrder:
    return NewOrder(symbol_id, user, coid, side, order_type, tif, price, qty, quote_qty, stp, ts)


@dataclass
class Driver:
    """Applies commands with fresh client ids and growing times; remembers every event."""

    engine: Engine = field(default_factory=lambda: Engine([SPEC]))
    ts: int = 1_000
    n: int = 0
    events: list[Event] = field(default_factory=list)
    last_events: list[Event] = field(default_factory=list)

    def apply(self, cmd: object) -> Result:
        self.ts += 1
        self.n += 1
        if isinstance(cmd, NewOrder):
            cmd = cmd._replace(ts=self.ts, client_order_id=cmd.client_order_id or f"o{self.n}")
        elif isinstance(cmd, (CancelOrder, AmendOrder, CancelAll)):
            cmd = cmd._replace(ts=self.ts)
        result = self.engine.apply(cmd)
        self.last_events = self.engine.take_events()
        self.events.extend(self.last_events)
        return result

    def buy(self, qty: int, price: int = 0, **kw: object) -> Result:
        return self.apply(order(BUY, qty, price, **kw))  # type: ignore[arg-type]

    def sell(self, qty: int, price: int = 0, **kw: object) -> Result:
        return self.apply(order(SELL, qty, price, **kw))  # type: ignore[arg-type]

    def cancel(self, order_id: int, user: int = 1, coid: str = "") -> Result:
        return self.apply(CancelOrder(1, user, order_id, coid, 0))

    def amend(self, order_id: int, new_qty: int, user: int = 1, coid: str = "") -> Result:
        return self.apply(AmendOrder(1, user, order_id, coid, new_qty, 0))

    def cancel_all(self, user: int = 1) -> Result:
        return self.apply(CancelAll(1, user, 0))

    def depth(self, limit: int = 1000) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        view = self.engine.apply(QueryDepth(1, limit))
        return list(view.bids), list(view.asks)  # type: ignore[union-attr]

    def trades(self) -> list[tuple[int, int, int, int]]:
        """(price, qty, maker order id, taker order id) of the last command's trades."""
        return [
            (e.price, e.qty, e.maker_order_id, e.taker_order_id) for e in self.last_events if isinstance(e, TradeEvent)
        ]
