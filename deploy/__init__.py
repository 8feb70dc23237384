"""Deployment: configuration, the ``exchange`` command, the supervising launcher, embedded servers.

- ``config``: the TOML configuration and its validation (``load_config``).
- ``topology``: ring names and what a child learns from the launcher (``ProcessContext``).
- ``launcher`` / ``supervisor`` / ``roles`` / ``child``: ``exchange up``, its children and their restarts.
- ``embedded``: PostgreSQL and Redis from pip-installed binaries, in the data folder.
- ``migrate`` + ``migrations/``: versioned SQL applied at start.
- ``lock``, ``log``, ``procs``: the data folder's lock, structured log lines, spawning helpers.

Nothing here runs on an order's path: these modules start, watch and stop the processes that do.
"""
