"""deploy.lock: one holder per data folder, named in the refusal; released on close."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from deploy.lock import DataDirLock, LockError


def test_second_holder_is_refused_with_folder_and_pid(tmp_path):
    first = DataDirLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(LockError) as info:
            DataDirLock(tmp_path).acquire()
    finally:
        first.release()

    assert str(tmp_path) in str(info.value)
    assert f"pid {os.getpid()}" in str(info.value)


def test_released_lock_can_be_taken_again(tmp_path):
    first = DataDirLock(tmp_path)
    first.acquire()
    first.release()
    first.release()  # idempotent

    second = DataDirLock(tmp_path)
    second.acquire()
    second.release()


def test_lock_of_a_killed_holder_is_free(tmp_path):
    code = (
        f"from deploy.lock import DataDirLock; from pathlib import Path; DataDirLock(Path({str(tmp_path)!r})).acquire()"
    )
    holder = subprocess.Popen([sys.executable, "-c", code + "; import time; print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE)  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
    with pytest.raises(LockError, match=f"pid {holder.pid}"):
        DataDirLock(tmp_path).acquire()

    holder.kill()
    holder.wait()
    lock = DataDirLock(tmp_path)
    lock.acquire()
    lock.release()
