"""What bench/e2e.py prints and records: its runs' figures, tables and goals."""

from __future__ import annotations

import os
import platform
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from statistics import quantiles

import psutil

from bench.load import Run
from bench.sampling import PG_OTHER, SERVICE, Sampler, per_payment

__all__ = ["Figures", "figures", "record", "report"]

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
MB = 1_000_000
# issue 19's goals, two cores
GOAL_PAYMENTS = 200  # completed payments a second (and 3x a baseline commit's, by hand)
GOAL_CPU_MS = 10.0  # CPU ms a payment, the service's processes incl. PostgreSQL
GOAL_STATEMENTS = 15  # SQL statements a payment
GOAL_ACCEPTED_P99, GOAL_REFUSED_P99 = 0.250, 0.050  # at 3x capacity offered
GOAL_REPLY_P99 = 0.300  # reply -> activated at 80% of capacity
GOAL_RSS = 150 * MB  # a web worker
PROCESS_ORDER = (*SERVICE, "bench client", "smsc", PG_OTHER)


def percentiles(values: list[float]) -> tuple[float, float, float] | None:
    """p50, p95, p99 (None for fewer than two values)."""
    if len(values) < 2:
        return None
    cuts = quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


def ms(values: list[float]) -> str:
    found = percentiles(values)
    if found is None:
        return "n/a"
    return " / ".join(f"{v * 1000:.0f}" for v in found) + " ms"


def p99(values: list[float]) -> float | None:
    found = percentiles(values)
    return found[2] if found else None


@dataclass
class Figures:
    """What one run of payments measured."""

    run: Run
    refused: Counter[str]  # "503 overloaded": how many
    ended: Counter[str]
    accepted: int
    completed: int
    post_rps: float
    completed_rps: float
    post_p: str
    reply_p: str
    total_p: str
    reply_p99: float | None
    accepted_p99: float | None
    refused_p99: float | None  # the 503s'
    cpu_ms: dict[str, float]  # role (and "service") -> CPU ms a completed payment
    statements: dict[str, dict[str, float]]  # process -> kind -> a completed payment


def figures(run: Run) -> Figures:
    payments = run.payments
    accepted = [p for p in payments if p.status == 201]
    done = [p for p in payments if p.activated_at is not None]
    replied = [p for p in done if p.replied_at is not None]
    last = max((p.activated_at for p in done), default=run.started)  # type: ignore[type-var]
    reply = [p.activated_at - p.replied_at for p in replied]  # type: ignore[operator]
    return Figures(
        run=run, refused=Counter(f"{p.status} {p.code or ''}".strip()
                                 for p in payments if p.status != 201),
        ended=Counter(p.ended or "not found" for p in accepted),
        accepted=len(accepted), completed=len(done),
        post_rps=len(payments) / max(run.posted - run.started, 1e-6),
        completed_rps=len(done) / max(last - run.started, 1e-6),
        post_p=ms([p.latency for p in payments]), reply_p=ms(reply),
        total_p=ms([p.activated_at - p.posted_at for p in done]),  # type: ignore[operator]
        reply_p99=p99(reply), accepted_p99=p99([p.latency for p in accepted]),
        refused_p99=p99([p.latency for p in payments if p.status == 503]),
        cpu_ms=per_payment(run.cpu, len(done)),
        statements={process: {kind: n / max(len(done), 1) for kind, n in counts.items()}
                    for process, counts in run.statements.items()})


def title(run: Run) -> str:
    if run.rate is None:
        return "as fast as they go"
    return f"{'offered' if run.open_loop else 'paced'} at {run.rate:.0f}/s"


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = psutil.virtual_memory().total / 2**30
    return (f"{os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {cpu}, "
            f"{ram:.1f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def goal(met: bool | None) -> str:
    return "not measured" if met is None else "met" if met else "**NOT met**"


def runs_table(results: list[Figures]) -> list[str]:
    lines = [
        "| run | POST /orders | not 201 | orders ended | POST /s | completed payments/s "
        "| POST p50 / p95 / p99 | reply → activated p50 / p95 / p99 "
        "| posted → activated p50 / p95 / p99 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for one in results:
        ended = ", ".join(f"{n} {s}" for s, n in one.ended.most_common())
        refused = ", ".join(f"{n}× {s}" for s, n in one.refused.most_common()) or "0"
        lines.append(f"| {title(one.run)} | {len(one.run.payments)} | {refused} | {ended} | "
                     f"{one.post_rps:.0f} | {one.completed_rps:.0f} | {one.post_p} | "
                     f"{one.reply_p} | {one.total_p} |")
    return lines


def overload_lines(one: Figures, capacity: float, seconds: float) -> list[str]:
    refused = one.refused.get("503 overloaded", 0)
    other = sum(one.refused.values()) - refused
    accepted_p99 = "n/a" if one.accepted_p99 is None else f"{one.accepted_p99 * 1000:.0f} ms"
    refused_p99 = "n/a" if one.refused_p99 is None else f"{one.refused_p99 * 1000:.0f} ms"
    posts = sorted(p.posted_at for p in one.run.payments)
    sent = (len(posts) - 1) / max(posts[-1] - posts[0], 1e-6)
    late = p99([p.sent_at - (p.due or p.sent_at) for p in one.run.payments]) or 0.0
    return [f"Overload: {len(one.run.payments)} new orders offered at {one.run.rate:.0f}/s "
            f"(3 × the {capacity:.0f} completed/s of the first run) for {seconds:g} s, open "
            f"loop, sent at {sent:.0f}/s (p99 {late * 1000:.0f} ms after due) on "
            f"{one.run.connections} connections: accepted "
            f"{one.accepted / seconds:.0f}/s, "
            f"503 overloaded {refused / seconds:.0f}/s" + (f", other refusals {other}" if other
                                                            else "") +
            f"; p99 of accepted answers {accepted_p99}, of 503 answers {refused_p99}; "
            f"{one.completed} of the accepted orders activated, at {one.completed_rps:.0f}/s."]


def cpu_table(results: list[Figures], bare_cpu: dict[tuple[str, int], float],
              sampler: Sampler) -> list[str]:
    peaks: dict[str, int] = {}
    counts: Counter[str] = Counter()
    for (name, _), rss in sampler.peak.items():
        role = name.removesuffix(" worker")
        peaks[role] = max(peaks.get(role, 0), rss)
        counts[role] += 1
    bare = sum(seconds for (name, _), seconds in bare_cpu.items()
               if name.startswith("bare gunicorn"))
    lines = ["| process | processes | largest RSS | " + " | ".join(
        f"CPU ms a payment, {title(one.run)}" for one in results) + " |",
        "| --- | --- | --- |" + " --- |" * len(results)]
    for role in PROCESS_ORDER:
        cpu = " | ".join(f"{one.cpu_ms.get(role, 0.0):.2f}" for one in results)
        lines.append(f"| {role} | {counts[role]} | {peaks.get(role, 0) / MB:.0f} MB | {cpu} |")
        if role == SERVICE[-1]:
            total = " | ".join(f"**{one.cpu_ms['service']:.2f}**" for one in results)
            lines.append(f"| **the service: the rows above** | | | {total} |")
    lines += ["", "(CPU ms a payment: user + system CPU of those processes during the run, "
              "divided by the payments it completed. Out of the service's figure: the bench "
              "client, the SMSC, and PostgreSQL's other connections (the bench watching orders "
              "end, anyone else's); Redis is shared with anything else using it. The bare "
              f"gunicorn used {bare:.1f} CPU s in its run.)"]
    return lines


def sql_table(results: list[Figures], why_not: str) -> list[str]:
    if why_not:
        return [f"SQL statements: not counted ({why_not})."]
    processes = list(results[0].statements)
    lines = ["| SQL a payment | " + " | ".join(title(one.run) for one in results) + " |",
             "| --- |" + " --- |" * len(results)]

    def cell(counts: dict[str, float]) -> str:
        return (f"{counts.get('statements', 0):.1f} + {counts.get('COMMIT', 0):.1f} commits"
                + (f", {counts['ROLLBACK']:.1f} rollbacks" if counts.get("ROLLBACK", 0) >= 0.05
                   else "")
                + f", {counts.get('pings', 0):.1f} pings")

    for process in processes:
        lines.append(f"| {process} | " + " | ".join(cell(one.statements[process])
                                                     for one in results) + " |")
    totals = [{kind: sum(c.get(kind, 0) for c in one.statements.values())
               for kind in ("statements", "COMMIT", "ROLLBACK", "pings")} for one in results]
    lines.append("| **all** | " + " | ".join(f"**{cell(t)}**" for t in totals) + " |")
    lines += ["", "(Counted by PostgreSQL: each service process connects as a role of its own "
              "whose statements the server logs, bench/pg_statements.py. Statements leave out "
              "BEGIN (not shown), COMMIT, ROLLBACK and pool_pre_ping's empty statement, the "
              "pings; all the service's statements in the run, polling and connecting "
              "included, divided by the payments it completed.)"]
    return lines


def statements_a_payment(one: Figures) -> float | None:
    if not one.statements:
        return None
    return sum(counts.get("statements", 0) for counts in one.statements.values())


def goals(maximal: Figures, paced: Figures | None, paced_auto: bool,
          overload: Figures | None, peak_web: int) -> list[str]:
    sql = statements_a_payment(maximal)
    rows: list[tuple[str, str, bool | None]] = [
        (f"completed payments/s ≥ {GOAL_PAYMENTS} (and ≥ 3× a baseline commit's run, made "
         "alternately by hand)", f"{maximal.completed_rps:.0f}/s",
         maximal.completed_rps >= GOAL_PAYMENTS),
        (f"CPU a payment, the service's processes incl. PostgreSQL ≤ {GOAL_CPU_MS:g} ms",
         f"{maximal.cpu_ms['service']:.1f} ms", maximal.cpu_ms["service"] <= GOAL_CPU_MS),
        (f"SQL statements a payment ≤ {GOAL_STATEMENTS}",
         "not counted" if sql is None else f"{sql:.1f}",
         None if sql is None else sql <= GOAL_STATEMENTS)]
    if overload is None:
        rows.append(("at 3× capacity offered: accepted POST /orders p99 < 250 ms, refusals "
                     "p99 < 50 ms", "not run (--overload-seconds 0)", None))
    else:
        accepted, refused = overload.accepted_p99, overload.refused_p99
        rows += [
            (f"at 3× capacity offered: accepted POST /orders p99 < "
             f"{GOAL_ACCEPTED_P99 * 1000:.0f} ms",
             "n/a" if accepted is None else f"{accepted * 1000:.0f} ms",
             None if accepted is None else accepted < GOAL_ACCEPTED_P99),
            (f"at 3× capacity offered: refusals (503) p99 < {GOAL_REFUSED_P99 * 1000:.0f} ms",
             "none refused" if refused is None else f"{refused * 1000:.0f} ms",
             None if refused is None else refused < GOAL_REFUSED_P99)]
    reply = paced.reply_p99 if paced else None
    rows.append((f"reply → activated p99 at 80% of capacity < {GOAL_REPLY_P99 * 1000:.0f} ms",
                 "not run (no --rate auto)" if paced is None or reply is None else
                 f"{reply * 1000:.0f} ms at {paced.run.rate:.0f}/s"
                 + ("" if paced_auto else " (not --rate auto)"),
                 None if not paced_auto or reply is None else reply < GOAL_REPLY_P99))
    rows.append((f"web worker RSS ≤ {GOAL_RSS // MB} MB", f"largest {peak_web / MB:.0f} MB",
                 peak_web <= GOAL_RSS))
    return (["| goal (2 cores) | measured | |", "| --- | --- | --- |"]
            + [f"| {name} | {value} | {goal(met)} |" for name, value, met in rows])


def report(settings: str, results: list[Figures], paced_auto: bool, overload_seconds: float,
           bare: tuple[float, int, float], bare_cpu: dict[tuple[str, int], float],
           sampler: Sampler, why_not: str, notes: list[str]) -> str:
    """The printout of a whole bench run (``bare``: its rate, its errors, its seconds)."""
    bare_rps, bare_errors, bare_seconds = bare
    maximal = results[0]
    paced = next((one for one in results if one.run.name == "paced"), None)
    overload = next((one for one in results if one.run.name == "overload"), None)
    peak_web = max((rss for (name, _), rss in sampler.peak.items()
                    if name == "web gunicorn worker"), default=0)
    lines = [settings, "", *runs_table(results), "",
             f"Bare Flask POST /orders under the same gunicorn.conf.py: {bare_rps:.0f} "
             f"requests/s ({bare_errors} not 201) over {bare_seconds:g} s; POST "
             f"/api/v1/orders at full speed: {maximal.post_rps:.0f}/s, ratio "
             f"{maximal.post_rps / bare_rps:.2f}."]
    if overload is not None:
        lines += ["", *overload_lines(overload, maximal.completed_rps, overload_seconds)]
    lines += ["", *cpu_table(results, bare_cpu, sampler), "", *sql_table(results, why_not),
              "", *goals(maximal, paced, paced_auto, overload, peak_web)]
    lines += [f"\n{note}" for note in notes]
    return "\n".join(lines)


def record(body: str) -> None:
    """Append the run to bench/RESULTS.md, with its command and the machine."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command_line = " ".join(["python", "bench/e2e.py", *sys.argv[1:]])
    new = not RESULTS.exists()
    with RESULTS.open("a", encoding="utf-8") as out:
        if new:
            out.write("# End-to-end benchmark (`bench/e2e.py`)\n\nOne section a run, "
                      "newest last; how it measures is in the script's docstring.\n")
        out.write(f"\n## {stamp}\n\n`{command_line}`\n\nMachine: {machine()}\n\n{body}\n")
    print(f"\nwritten to {RESULTS}")

