"""SQL statements the service's processes run, counted by PostgreSQL itself.

PostgreSQL 15 here has no pg_stat_statements (it must be preloaded, which takes a restart), and
its statistics views count rows and transactions, not statements. So each service process
connects as a login role of its own, made for the run, with ``log_statement = 'all'`` set on
that role only (``ALTER ROLE ... SET``, applied when a connection of it starts): the server
writes one line for every statement it executes on those connections and for nothing else (the
bench's own queries and the seeding go as the URL's user, unlogged). The lines between two
offsets of the server's log are counted: ``<role>@<db> LOG:  statement: ...`` (a simple-protocol
query) or ``... LOG:  execute <name>: ...`` (one Execute of the extended protocol, prepared or
not). BEGIN, COMMIT and ROLLBACK, which psycopg sends itself, and the empty statement ``;``
of SQLAlchemy's pool_pre_ping at each checkout are counted apart from the statements, as
SQLAlchemy's count of statements (bench/hot_paths.py) leaves them out.

The log is where the server writes: pg_current_logfile() with logging_collector on, else the
postmaster's stderr (Debian's pg_ctlcluster sends it to /var/log/postgresql/...); a probe
statement checks that its line shows there before anything is counted. Writing the lines costs
PostgreSQL CPU, counted in its figures: about 5 µs a line here (20,000 short statements by a
logged role and by an unlogged one, alternating, 5 times: median 28.5 against 23.0 µs each), so
about 0.2 ms a payment at 40 lines. The roles, and their settings with them, are
dropped at the end, even on a failure: the server's settings are never changed.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, make_url, text

__all__ = ["StatementLog", "service_roles"]

ROLE_PREFIX = "bench_e2e_"
TRANSACTION = ("BEGIN", "COMMIT", "ROLLBACK")


class StatementLog:
    """Counts, in the server's log, the statements each service process's role ran."""

    def __init__(self, users: dict[str, str], path: Path | None, why_not: str = "") -> None:
        self.users = users  # process ("web", "worker", "smpp") -> its login role
        self.path = path
        self.why_not = why_not  # why nothing can be counted, when path is None
        roles = "|".join(users.values())
        self.line = re.compile(rf"\b({roles})\b[^\n]*? LOG:  (?:statement|execute [^:\n]*): "
                               rf"\s*(\w*)")

    def mark(self) -> int:
        """Where the log ends now: count from here."""
        return self.path.stat().st_size if self.path else 0

    def count(self, since: int) -> dict[str, Counter[str]]:
        """Per process: ``statements``, ``pings`` and each of BEGIN, COMMIT, ROLLBACK since
        ``since``."""
        counts: dict[str, Counter[str]] = {process: Counter() for process in self.users}
        if self.path is None:
            return counts
        process_of = {role: process for process, role in self.users.items()}
        with self.path.open("rb") as log:
            log.seek(since)
            lines = log.read().decode("utf-8", "replace")
        for role, word in self.line.findall(lines):
            word = word.upper()
            kind = word if word in TRANSACTION else "statements" if word else "pings"
            counts[process_of[role]][kind] += 1
        return counts


def server_log(connection: Connection) -> Path | None:
    """The file the server writes its log to, if it is a file on this machine."""
    directory = Path(connection.scalar(text("SHOW data_directory")))
    current = connection.scalar(text("SELECT pg_current_logfile()"))
    if current:
        return directory / current
    try:
        postmaster = (directory / "postmaster.pid").read_text().split()[0]
        stderr = Path(os.readlink(f"/proc/{postmaster}/fd/2"))
    except (OSError, IndexError):
        return None
    return stderr if stderr.is_file() else None


def drop_stale_roles(connection: Connection) -> None:
    """Roles of an earlier bench whose process died before it could drop them."""
    for (role,) in connection.execute(text("SELECT rolname FROM pg_roles WHERE rolname LIKE :p"),
                                      {"p": ROLE_PREFIX + "%"}):
        pid = role.removeprefix(ROLE_PREFIX).split("_")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            drop_roles(connection, [role])


def drop_roles(connection: Connection, roles: list[str]) -> None:
    names = ", ".join(roles)
    connection.exec_driver_sql(f"DROP OWNED BY {names}")  # their grants on the schema
    connection.exec_driver_sql(f"DROP ROLE {names}")


@contextmanager
def service_roles(engine: Engine, database_url: str,
                  processes: tuple[str, ...]) -> Iterator[tuple[StatementLog, dict[str, str]]]:
    """Make a logged login role for each of ``processes`` with the rights of ``engine``'s
    schema; yield the statement log and each process's database URL; drop the roles after."""
    users = {process: f"{ROLE_PREFIX}{os.getpid()}_{process}" for process in processes}
    url = make_url(database_url)
    urls = {process: url.set(username=user).render_as_string(hide_password=False)
            for process, user in users.items()}
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        drop_stale_roles(connection)
        schema = connection.scalar(text("SELECT current_schema()"))
        for user in users.values():
            for sql in (f"CREATE ROLE {user} LOGIN",
                        f"ALTER ROLE {user} SET log_statement = 'all'",
                        f"ALTER ROLE {user} SET log_parameter_max_length = 0",  # no DETAIL line
                        f'GRANT USAGE ON SCHEMA "{schema}" TO {user}',
                        f'GRANT ALL ON ALL TABLES IN SCHEMA "{schema}" TO {user}',
                        f'GRANT ALL ON ALL SEQUENCES IN SCHEMA "{schema}" TO {user}'):
                connection.exec_driver_sql(sql)
        path = server_log(connection)
    try:
        log = StatementLog(users, path)
        if path is None:
            log.why_not = "the server does not log to a file on this machine"
        elif not probe(log, urls[processes[0]]):
            log.path, log.why_not = None, f"a probe statement did not show in {path}"
        yield log, urls
    finally:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            drop_roles(connection, list(users.values()))


def probe(log: StatementLog, url: str) -> bool:
    """Run one statement as a service role and see its line in the log."""
    since = log.mark()
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    finally:
        engine.dispose()
    for _ in range(20):
        if sum(c["statements"] for c in log.count(since).values()):
            return True
        time.sleep(0.1)
    return False
