"""Signed order endpoints: order (new, cancel, query), test, amend, openOrders, batchOrders.

Each handler reads and authenticates the request, validates it into one
engine command (``ingress/params.py``), sends it to the owning shard through
the ``EngineClient`` seam and writes the contract view (``ingress/views.py``).
Commands carry the caller's user id, so another user's order answers -2013
exactly like an unknown id (the engine decides). The hot path does not log.
"""

from __future__ import annotations

from typing import Any

import falcon.asgi
import orjson

from ingress import batch, views
from ingress import params as p
from ingress.errors import ApiError, Malformed, MissingParam, error_of_exception, rejected_error
from ingress.inputs import Inputs, check_allowed, inputs_of, is_json_body, query_params, read_body
from ingress.resources import history
from ingress.resources.base import Context, answer, unexpected
from shards.protocol import (
    CancelAll,
    CancelOrder,
    OrderResult,
    OrdersResult,
    OrderView,
    QueryOpenOrders,
    QueryOrder,
    Rejected,
)

NEW_ORDER = p.ORDER_PARAMS | p.SIGNED_PARAMS
ORDER_REF = frozenset(("symbol", "orderId", "origClientOrderId")) | p.SIGNED_PARAMS
AMEND = ORDER_REF | {"newQty"}
SYMBOL_SIGNED = frozenset(("symbol",)) | p.SIGNED_PARAMS
BATCH = frozenset(("orders",)) | p.SIGNED_PARAMS
BATCH_MAX = 100
MAX_USER_ID = 2**64 - 1  # what a wire body holds (a larger id: batch.place fails as it always did)
NO_SUCH_ORDER = -2013


def _order_result(res: object) -> OrderResult:
    if type(res) is not OrderResult:
        raise unexpected(res)
    return res


class Order:
    """POST (new), DELETE (cancel) and GET (query) /api/v3/order."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ctx = self.ctx
        params, user_id = await ctx.signed(req, NEW_ORDER)
        rules, cmd, resp_type = p.new_order(ctx.catalog, params, user_id)
        res = _order_result(await ctx.call(rules.shard, cmd))
        answer(resp, views.new_order(rules, res.order, res.fills, resp_type))

    async def on_delete(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ctx = self.ctx
        params, user_id = await ctx.signed(req, ORDER_REF)
        rules = p.symbol_rules(ctx.catalog, params)
        order_id, coid = p.order_ref(params)
        res = _order_result(await ctx.call(rules.shard, CancelOrder(rules.symbol_id, user_id, order_id, coid, 0)))
        answer(resp, views.canceled(rules, res.order))

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ctx = self.ctx
        params, user_id = await ctx.signed(req, ORDER_REF)
        rules = p.symbol_rules(ctx.catalog, params)
        order_id, coid = p.order_ref(params)
        try:
            res = _order_result(await ctx.call(rules.shard, QueryOrder(rules.symbol_id, user_id, order_id, coid)))
        except ApiError as exc:
            if exc.code != NO_SUCH_ORDER:
                raise
            past = await history.find_order(ctx, rules, user_id, order_id, coid)  # no longer in the book
            if past is None:
                raise
            answer(resp, past)
            return
        answer(resp, views.order(rules, res.order))


class OrderTest:
    """POST /api/v3/order/test: every check of a new order, nothing sent to the engine."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        params, user_id = await self.ctx.signed(req, NEW_ORDER)
        p.new_order(self.ctx.catalog, params, user_id)
        resp.data = b"{}"


class Amend:
    """PUT /api/v3/order/amend/keepPriority: reduce an open order's quantity in place."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def on_put(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ctx = self.ctx
        params, user_id = await ctx.signed(req, AMEND)
        rules, cmd = p.amend(ctx.catalog, params, user_id)
        order = _order_result(await ctx.call(rules.shard, cmd)).order
        # The engine's OrderResult carries no execution id yet: 0 until the protocol has one.
        answer(resp, {"transactTime": order.update_time, "executionId": 0, "amendedOrder": views.order(rules, order)})


class OpenOrders:
    """GET (symbol optional: every shard) and DELETE (cancel all on a symbol) /api/v3/openOrders."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ctx = self.ctx
        params, user_id = await ctx.signed(req, SYMBOL_SIGNED)
        if p.optional_text(params, "symbol") is not None:
            rules = p.symbol_rules(ctx.catalog, params)
            results: list[Any] = [await ctx.call(rules.shard, QueryOpenOrders(rules.symbol_id, user_id))]
        else:
            shards = range(ctx.engine.shard_count)
            results = await ctx.engine.call_batch([(shard, QueryOpenOrders(0, user_id)) for shard in shards])
        orders: list[OrderView] = []
        for res in results:
            if type(res) is OrdersResult:
                orders.extend(res.orders)
            elif isinstance(res, Exception):
                raise error_of_exception(res)
            elif type(res) is Rejected:
                raise rejected_error(res)
            else:
                raise unexpected(res)
        orders.sort(key=lambda o: (o.time, o.symbol_id, o.order_id))
        by_id = ctx.catalog.by_id
        answer(resp, [views.order(by_id[o.symbol_id], o) for o in orders])

    async def on_delete(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ctx = self.ctx
        params, user_id = await ctx.signed(req, SYMBOL_SIGNED)
        rules = p.symbol_rules(ctx.catalog, params)
        res = await ctx.call(rules.shard, CancelAll(rules.symbol_id, user_id, 0))
        if type(res) is not OrdersResult:
            raise unexpected(res)
        answer(resp, [views.canceled(rules, o) for o in res.orders])


def _orders_param(params: dict[str, Any]) -> list[Any]:
    orders = params.get("orders")
    if orders is None or orders == "":
        raise MissingParam("mandatory parameter 'orders' was not sent, was empty or null")
    if type(orders) is str:
        try:
            orders = orjson.loads(orders)
        except orjson.JSONDecodeError as exc:
            raise Malformed(f"parameter 'orders' is not valid JSON: {exc}") from None
    if type(orders) is not list:
        raise Malformed(f"parameter 'orders' must be an array of order objects, got {type(orders).__name__}")
    if not orders:
        raise MissingParam("mandatory parameter 'orders' is an empty array; send 1 to 100 orders")
    if len(orders) > BATCH_MAX:
        raise Malformed(f"parameter 'orders' holds {len(orders)} orders; the limit is {BATCH_MAX}")
    return orders


class BatchOrders:
    """POST /api/v3/batchOrders: 1..100 new orders, one answer (order or error) per order, in order."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        """``ctx.signed``, ``_orders_param`` and ``batch.place``, in that order; a JSON body of plain LIMIT orders
        alone (``batch.scan_body``: no parsed dicts) takes the same steps with the same inputs, so the same answer.
        """
        ctx = self.ctx
        query = query_params(req)
        body = await read_body(req, ctx.max_body_bytes)
        scanned = None
        if body and "orders" not in query and is_json_body(req.content_type, body):
            scanned = batch.scan_body(ctx.catalog, body)
        if scanned is None:
            inputs = inputs_of(req, query, body)
        else:  # what inputs_of gives, but for the parsed orders: the body holds "orders" alone, the query wins
            params: dict[str, Any] = {"orders": scanned}
            params.update(query)
            inputs = Inputs(params, req.query_string, body, "query" if "signature" in query else "")
        user_id = await ctx.auth.verify(req, inputs)
        check_allowed(inputs.params, BATCH)
        if scanned is not None and 0 <= user_id <= MAX_USER_ID:
            resp.data, busy = await batch.place_scanned(ctx.engine, ctx.catalog, scanned, user_id)
        else:
            orders = _orders_param(orjson.loads(body) if scanned is not None else inputs.params)
            resp.data, busy = await batch.place(ctx.engine, ctx.catalog, orders, user_id)
        if busy:
            resp.set_header("Retry-After", "1")
