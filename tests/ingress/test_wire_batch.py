"""The batch records of ``shards/wire.py``: NewOrders (ingress -> shard) and Results (shard -> ingress).

Encoding and decoding are tested against each other (house rule 2), with
fills, rejects, stamping, fragmentation and malformed input.
"""

from __future__ import annotations

import pytest

from shards import wire
from shards.protocol import Fill, NewOrder, OrderResult, OrderView, Rejected


def _order(i: int, coid: str = "") -> NewOrder:
    return NewOrder(1 + i % 3, 7, coid or f"c{i}", 1, 1, 1, 10_000 + i, 1 + i, 0, 2, 0)


def _view(i: int) -> OrderView:
    return OrderView(1, 100 + i, f"c{i}", 7, 1, 1, 1, 2, 10_000, 5, 2, 20_000, 0, 2, 1_700_000_000_000, 1, 2)


def test_new_orders_round_trip_keeps_order_and_fields():
    orders = [_order(i) for i in range(5)] + [_order(5, "x" * 36)]

    rid, decoded = wire.decode_new_orders(wire.encode_new_orders(42, orders))

    assert rid == 42
    assert decoded == orders


def test_new_orders_decoded_by_the_shard_are_stamped_with_its_time():
    _, decoded = wire.decode_new_orders(wire.encode_new_orders(1, [_order(0), _order(1)]), 1_234)

    assert [o.ts for o in decoded] == [1_234, 1_234]


def test_decode_command_reads_a_new_orders_record():
    orders = (_order(0), _order(1))

    rid, cmd = wire.decode_command(wire.encode_command(9, wire.NewOrders(orders)))

    assert (rid, cmd) == (9, wire.NewOrders(orders))


def test_new_orders_per_record_fills_but_never_exceeds_max_record():
    per = wire.new_orders_per_record(508)

    record = wire.encode_new_orders(1, [_order(i, "y" * 36) for i in range(per)])
    bigger = wire.encode_new_orders(1, [_order(i, "y" * 36) for i in range(per + 1)])

    assert per == 5
    assert len(record) <= 508 < len(bigger)


def test_a_client_order_id_too_long_for_the_wire_names_the_value():
    with pytest.raises(wire.WireError, match="z" * 37):
        wire.encode_new_orders(1, [_order(0, "z" * 37)])


def test_results_round_trip_mixes_orders_with_fills_and_rejects():
    results = [
        OrderResult(_view(0), ()),
        Rejected(-2010, "duplicate newClientOrderId c1"),
        OrderResult(_view(2), (Fill(5, 10_000, 2), Fill(6, 10_001, 3))),
        Rejected(-1000, "é" * 3),
    ]

    rid, decoded = wire.decode_answer(wire.encode_results(77, results))

    assert rid == 77
    assert decoded == wire.Results(tuple(results))


def test_a_large_results_answer_is_fragmented_and_reassembled():
    results = [OrderResult(_view(i), tuple(Fill(i, 10_000, 1) for _ in range(20))) for i in range(100)]
    record = wire.encode_results(5, results)
    assembler = wire.AnswerAssembler()

    whole = [w for part in wire.fragment_answer(record, 1_000) if (w := assembler.feed(part)) is not None]

    assert len(whole) == 1
    assert wire.decode_answer(whole[0]) == (5, wire.Results(tuple(results)))


def test_a_truncated_results_record_is_a_wire_error():
    record = wire.encode_results(5, [OrderResult(_view(0), (Fill(1, 2, 3),))])

    with pytest.raises(wire.WireError):
        wire.decode_answer(record[:-4])


def test_results_hold_only_order_results_and_rejects():
    with pytest.raises(wire.WireError, match="Pong"):
        wire.encode_results(1, [wire.Pong(0)])


def test_packed_bodies_make_the_same_record_as_encode_new_orders():
    orders = [_order(i) for i in range(4)] + [_order(4, "x" * 36)]
    bodies = [wire.new_order_body(o) for o in orders[:2]]
    bodies += [wire.pack_new_order(*o[:2], o[2].encode(), *o[3:]) for o in orders[2:]]

    record = wire.new_orders_record(42, bodies)

    assert record == wire.encode_new_orders(42, orders)
    assert wire.decode_new_orders(record) == (42, orders)


def test_new_order_body_refuses_a_client_order_id_too_long_for_the_wire():
    with pytest.raises(wire.WireError, match="z" * 37):
        wire.new_order_body(_order(0, "z" * 37))


def _from_items(items: list[tuple]) -> list[object]:
    out: list[object] = []
    for v in items:
        if v[0] == wire.K_REJECTED:
            out.append(Rejected(v[1], v[2]))
            continue
        assert len(v) == (20 if v[18] else 19) and (v[18] == 0 or len(v[19]) == v[18])
        view = OrderView(v[1], v[2], v[3].decode(), *v[4:18])
        out.append(OrderResult(view, tuple(Fill(*f) for f in v[19]) if v[18] else ()))
    return out


def test_results_items_hold_what_decode_answer_gives():
    results = [
        OrderResult(_view(0), ()),
        Rejected(-2010, "duplicate newClientOrderId c1"),
        OrderResult(_view(2), (Fill(5, 10_000, 2), Fill(6, 10_001, 3))),
        Rejected(-1000, "é" * 3),
        OrderResult(_view(4), (Fill(7, 9_999, 1),)),
    ]
    record = wire.encode_results(77, results)

    rid, items = wire.results_items(record)

    assert rid == 77
    assert _from_items(items) == list(wire.decode_answer(record)[1].results) == results


def test_results_items_refuse_a_truncated_record_or_another_kind():
    record = wire.encode_results(5, [OrderResult(_view(0), (Fill(1, 2, 3),)), Rejected(-2010, "no")])

    for bad in (record[:-1], record[:-4], record[:30], wire.encode_answer(5, Rejected(-2010, "no"))):
        with pytest.raises(wire.WireError):
            wire.results_items(bad)
