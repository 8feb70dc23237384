"""Child-process bodies shared by the ring tests (run in forked children)."""

from __future__ import annotations

from ringbuf import Consumer, Doorbell, Producer, Ring


def echo(in_name: str, out_name: str, in_fd: int, out_fd: int) -> None:
    """Child: block on ``in_name``, send every record back on ``out_name`` until b"stop"."""
    inbox, outbox = Ring.attach(in_name), Ring.attach(out_name)
    consumer = Consumer([inbox], Doorbell.from_fd(in_fd), "block")
    producer = Producer(outbox, Doorbell.from_fd(out_fd))
    while True:
        consumer.wait()
        for rec in inbox.read():
            if rec == b"stop":
                return
            while not producer.send(rec):
                pass
        inbox.commit()
