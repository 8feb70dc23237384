"""Build of the optional C cores; every other setting lives in pyproject.toml.

``shards._matchcore`` (the matching engine's hot commands) and ``ringbuf._ringcore``
(the ring's single-record fast lane) are compiled at install. Each is optional:
where no C compiler is at hand the install still succeeds and the pure-Python
code, which stays the reference the cores are tested against, runs instead.
"""

from setuptools import Extension, setup

CFLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]

setup(
    ext_modules=[
        Extension("shards._matchcore", ["shards/_matchcore.c"], optional=True, extra_compile_args=CFLAGS),
        Extension("ringbuf._ringcore", ["ringbuf/_ringcore.c"], optional=True, extra_compile_args=CFLAGS),
        Extension("ingress._batchcore", ["ingress/_batchcore.c"], optional=True, extra_compile_args=CFLAGS),
    ]
)
