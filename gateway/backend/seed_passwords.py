"""The payment passwords of a seed file: plain ones hashed across the machine's cores, and
hashes that arrive ready-made, checked strictly.

A password is hashed with werkzeug's default (scrypt, N=32768, r=8, p=1: about 90 ms of CPU
each on the machines this project is measured on), the hash sign-in checks with
``check_password_hash``. That cost is the point of the hash, and is kept: many passwords
are hashed in a pool of processes, one per core. Hashes made elsewhere are accepted in
werkzeug's formats, no weaker than these (hex digits in lower case; salt 8-64 characters of
``A-Z a-z 0-9 . / + _ -``):

    scrypt:<N>:<r>:<p>$<salt>$<128 hex>    N a power of 2 from 16384 to 1048576, below 2^(16·r),
                                           r 1-32, p 1-4, N × r at most 1048576 (128 MiB)
    pbkdf2:sha256:<iterations>$<salt>$<64 hex>     iterations 600000 to 1200000
    pbkdf2:sha512:<iterations>$<salt>$<128 hex>    iterations 210000 to 600000
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

from werkzeug.security import check_password_hash, generate_password_hash

__all__ = ["Progress", "hash_format_error", "settle", "settle_one"]

# (what is being done, how many are done, of how many): "hashing passwords", 5000, 100000
Progress = Callable[[str, int, int], None]

_SALT = r"[A-Za-z0-9./+_-]{8,64}"
_SCRYPT = re.compile(
    rf"scrypt:([0-9]{{1,8}}):([0-9]{{1,2}}):([0-9]{{1,2}})\${_SALT}\$[0-9a-f]{{128}}")
_PBKDF2 = re.compile(rf"pbkdf2:(sha256|sha512):([0-9]{{1,8}})\${_SALT}\$([0-9a-f]+)")
# least and most iterations, hex digits: at most about 0.4 s of a core a sign-in
_PBKDF2_RULES = {"sha256": (600_000, 1_200_000, 64), "sha512": (210_000, 600_000, 128)}
_MOST_SCRYPT_MEMORY = 128 << 20  # bytes, 128·N·r: werkzeug's default takes 32 MiB
# Fewer passwords than this are hashed in this process: a pool's start costs more.
_POOL_FROM = 16


def hash_format_error(value: str) -> str | None:
    """What is wrong with a ready-made password hash, or None when it is one sign-in checks."""
    if scrypt := _SCRYPT.fullmatch(value):
        n, r, p = (int(group) for group in scrypt.groups())
        if n < 16384 or n > 1 << 20 or n & (n - 1):
            return "scrypt N must be a power of 2 from 16384 to 1048576"
        if not (1 <= r <= 32 and 1 <= p <= 4):
            return "scrypt r must be 1-32 and p 1-4"
        if 128 * n * r > _MOST_SCRYPT_MEMORY:  # each sign-in would need that much memory
            return "scrypt N × r must be at most 1048576 (128 MiB a sign-in)"
        if n >= 1 << (16 * r):  # RFC 7914: N < 2^(128·r/8); OpenSSL refuses the others
            return "scrypt N must be below 2^(16·r) (65536 needs r of 2 or more)"
        return None
    if pbkdf2 := _PBKDF2.fullmatch(value):
        digest, iterations, hexed = pbkdf2.group(1), int(pbkdf2.group(2)), pbkdf2.group(3)
        least, most, length = _PBKDF2_RULES[digest]
        if not least <= iterations <= most:
            return f"pbkdf2:{digest} iterations must be {least} to {most}"
        if len(hexed) != length:
            return f"a pbkdf2:{digest} hash has {length} hex digits"
        return None
    return ("not a password hash in a known format (scrypt:N:r:p$salt$hex or "
            "pbkdf2:sha256:iterations$salt$hex)")


def settle_one(task: tuple[str | None, str]) -> str:
    """The hash a wallet is to have for (its stored hash or None, the file's password): the
    stored one while the password still matches it, else a new one."""
    stored, password = task
    if stored is not None and check_password_hash(stored, password):
        return stored
    return generate_password_hash(password)


def settle(tasks: Sequence[tuple[str | None, str]], *, workers: int | None = None,
           progress: Progress | None = None) -> list[str]:
    """``settle_one`` of each task, in order; across ``workers`` processes (default: one a
    core) when there are many."""
    workers = workers or os.cpu_count() or 1
    total = len(tasks)
    if progress:
        progress("hashing passwords", 0, total)
    if workers < 2 or total < _POOL_FROM:
        results = []
        for task in tasks:
            results.append(settle_one(task))
            if progress:
                progress("hashing passwords", len(results), total)
        return results
    # spawn, not fork: the parent may hold database connections and threads
    context = multiprocessing.get_context("spawn")
    chunk = max(1, min(32, total // (workers * 8)))
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        results = []
        for result in pool.map(settle_one, tasks, chunksize=chunk):
            results.append(result)
            if progress:
                progress("hashing passwords", len(results), total)
    return results
