"""pip-audit of a lock file, said plainly: informational, never fails the build.

    python .ci/audit.py requirements.lock          # runs pip-audit on the lock's pins
    python .ci/audit.py --report audit.json        # reads a report pip-audit wrote (-f json)

pip-audit prints "No known vulnerabilities found" when it could look up no package at all
(its database unreachable, or the index a mirror without PyPI's JSON API). This says how many
packages were looked up, and so whether "none found" means anything.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from typing import Any


def summary(report: dict[str, Any]) -> str:
    packages = report.get("dependencies", [])
    skipped = [p for p in packages if p.get("skip_reason")]
    audited = [p for p in packages if not p.get("skip_reason")]
    vulnerable = [p for p in audited if p.get("vulns")]
    lines = []
    if not packages:
        return "pip-audit: NOT AUDITED: it reported no packages at all"
    if not audited:
        reasons = Counter(p["skip_reason"].split(":")[0] for p in skipped)
        lines.append(f"pip-audit: NOT AUDITED: none of the {len(packages)} packages could be "
                     "looked up (its vulnerability database could not be reached): "
                     + "; ".join(f"{reason} ({count})" for reason, count in reasons.items()))
        return "\n".join(lines)
    for package in vulnerable:
        ids = ", ".join(v["id"] for v in package["vulns"])
        lines.append(f"pip-audit: {package['name']} {package['version']}: {ids}")
    verdict = f"{len(vulnerable)} with known vulnerabilities" if vulnerable else \
        "no known vulnerabilities in them"
    lines.append(f"pip-audit: {len(audited)} of {len(packages)} packages looked up, {verdict}"
                 + (f"; {len(skipped)} could not be looked up" if skipped else ""))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", nargs="?", help="a requirements file pinned with hashes")
    parser.add_argument("--report", help="a JSON report pip-audit already wrote")
    args = parser.parse_args()
    if args.report:
        with open(args.report, encoding="utf-8") as file:
            report = json.load(file)
    else:
        ran = subprocess.run([sys.executable, "-m", "pip_audit", "-r", args.lock, "--no-deps",
                              "--disable-pip", "--progress-spinner", "off", "-f", "json"],
                             capture_output=True, text=True, timeout=600)
        try:
            report = json.loads(ran.stdout)
        except ValueError:
            last = (ran.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"pip-audit: NOT AUDITED: pip-audit failed ({last})")
            return
    print(summary(report))


if __name__ == "__main__":
    main()
