"""Ring records: every command and answer type survives encode -> decode unchanged."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shards import wire
from shards.protocol import (
    AmendOrder,
    BookTickerView,
    CancelAll,
    CancelOrder,
    DepthView,
    Fill,
    NewOrder,
    OrderResult,
    OrdersResult,
    OrderView,
    QueryBookTicker,
    QueryDepth,
    QueryOpenOrders,
    QueryOrder,
    Rejected,
)

u8 = st.integers(0, 255)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
rid = u64
coid = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", max_size=36)

commands = st.one_of(
    st.builds(NewOrder, u32, u64, coid, u8, u8, u8, i64, i64, i64, u8, i64),
    st.builds(CancelOrder, u32, u64, u64, coid, i64),
    st.builds(AmendOrder, u32, u64, u64, coid, i64, i64),
    st.builds(CancelAll, u32, u64, i64),
    st.builds(QueryOrder, u32, u64, u64, coid),
    st.builds(QueryOpenOrders, u32, u64),
    st.builds(QueryDepth, u32, u32),
    st.builds(QueryBookTicker, u32),
    st.builds(wire.Ping),
)

views = st.builds(OrderView, u32, u64, coid, u64, u8, u8, u8, u8, i64, i64, i64, i64, i64, u8, i64, i64, i64)
levels = st.lists(st.tuples(i64, i64), max_size=50).map(tuple)
results = st.one_of(
    st.builds(OrderResult, views, st.lists(st.builds(Fill, u64, i64, i64), max_size=20).map(tuple)),
    st.builds(OrdersResult, st.lists(views, max_size=20).map(tuple)),
    st.builds(Rejected, st.integers(-(2**31), 2**31 - 1), st.text(max_size=200)),
    st.builds(DepthView, u32, i64, levels, levels),
    st.builds(BookTickerView, u32, i64, i64, i64, i64),
    st.builds(wire.Pong, u32),
)


@given(rid, commands)
def test_every_command_decodes_to_itself(request_id, cmd):
    record = wire.encode_command(request_id, cmd)

    assert wire.decode_command(record) == (request_id, cmd)
    assert type(wire.decode_command(memoryview(record))[1]) is type(cmd)
    assert wire.command_request_id(record) == request_id


@given(rid, results)
def test_every_answer_decodes_to_itself(request_id, result):
    record = wire.encode_answer(request_id, result)

    decoded_rid, decoded = wire.decode_answer(memoryview(record))

    assert decoded_rid == request_id
    assert decoded == result
    assert type(decoded) is type(result)


def test_command_records_have_a_fixed_size_per_type():
    short = NewOrder(1, 2, "a", 1, 1, 1, 100, 5, 0, 2, 0)
    long = short._replace(client_order_id="x" * 36)

    assert len(wire.encode_command(1, short)) == len(wire.encode_command(1, long)) == wire.COMMAND_SIZE[NewOrder]


def test_client_order_id_longer_than_36_bytes_is_refused():
    cmd = NewOrder(1, 2, "x" * 37, 1, 1, 1, 100, 5, 0, 2, 0)

    with pytest.raises(wire.WireError, match="x{37}"):
        wire.encode_command(1, cmd)


def test_out_of_range_field_is_refused_naming_the_command():
    cmd = CancelAll(symbol_id=-1, user_id=2, ts=0)

    with pytest.raises(wire.WireError, match="CancelAll"):
        wire.encode_command(7, cmd)


def test_unknown_command_type_is_refused():
    with pytest.raises(wire.WireError, match="str"):
        wire.encode_command(1, "not a command")


@pytest.mark.parametrize("record", [b"\x00" + bytes(8), b"\x63" + bytes(8), b"\x01\x00"])
def test_malformed_command_record_raises_wire_error(record):
    with pytest.raises(wire.WireError):
        wire.decode_command(record)


def test_malformed_answer_record_raises_wire_error():
    truncated = wire.encode_answer(3, OrdersResult((_view(1), _view(2))))[:-10]

    with pytest.raises(wire.WireError, match="2 orders"):
        wire.decode_answer(truncated)


def test_long_reject_message_is_cut_not_refused():
    rid_, result = wire.decode_answer(wire.encode_answer(5, Rejected(-1013, "é" * 2000)))

    assert rid_ == 5
    assert result.code == -1013
    assert 0 < len(result.msg.encode()) <= wire.MAX_REJECT_MSG + 3


def _view(order_id: int) -> OrderView:
    return OrderView(1, order_id, f"c{order_id}", 9, 1, 1, 1, 2, 100, 5, 0, 0, 0, 1, 1_700_000_000_000, 0, 0)


def _reassemble(records, assembler):
    out = [assembler.feed(r) for r in records]
    return [bytes(r) for r in out if r is not None]


def test_full_depth_of_5000_levels_a_side_fragments_and_reassembles():
    bids = tuple((100_000 - i, i + 1) for i in range(5000))
    asks = tuple((100_001 + i, i + 2) for i in range(5000))
    depth = DepthView(3, 77, bids, asks)
    record = wire.encode_answer(42, depth)

    fragments = wire.fragment_answer(record, 4096)
    whole = _reassemble(fragments, wire.AnswerAssembler())

    assert len(fragments) > 1
    assert all(len(f) <= 4096 for f in fragments)
    assert whole == [record]
    assert wire.decode_answer(whole[0]) == (42, depth)


def test_small_answer_is_not_fragmented():
    record = wire.encode_answer(1, wire.Pong(0))

    assert wire.fragment_answer(record, 64) == [record]


def test_fragments_of_answers_from_two_rings_interleave_safely():
    a = wire.encode_answer(1, OrdersResult(tuple(_view(i) for i in range(30))))
    b = wire.encode_answer(2, OrderResult(_view(5), tuple(Fill(i, 100, 1) for i in range(300))))
    fa = wire.fragment_answer(a, 512)
    fb = wire.fragment_answer(b, 512)
    interleaved = [x for pair in zip(fa, fb, strict=False) for x in pair] + fa[len(fb) :] + fb[len(fa) :]
    assembler = wire.AnswerAssembler()

    whole = _reassemble(interleaved, assembler)

    assert sorted(whole) == sorted([a, b])
    assert len(assembler) == 0


def test_fragment_room_must_exceed_the_header():
    with pytest.raises(wire.WireError, match="max_record 9"):
        wire.fragment_answer(bytes(100), 9)


@given(rid, st.lists(commands, max_size=20))
def test_a_batch_encodes_as_its_commands_one_by_one(first, cmds):
    first = first % (2**63)

    assert wire.encode_commands(first, cmds) == [wire.encode_command(first + i, c) for i, c in enumerate(cmds)]


def test_a_batch_with_a_bad_command_names_it():
    good = CancelAll(1, 2, 0)
    bad = CancelAll(1, -5, 0)

    with pytest.raises(wire.WireError, match="user_id=-5"):
        wire.encode_commands(10, [good, bad, good])
