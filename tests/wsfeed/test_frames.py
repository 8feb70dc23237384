"""``text_frame`` builds the same bytes as websockets' own server-side serialization."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from wsfeed.hub import text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_matches_websockets_serialization(size):
    data = b"x" * size

    frame = text_frame(data)

    assert frame == Frame(Opcode.TEXT, data).serialize(mask=False)
