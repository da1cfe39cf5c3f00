#!/usr/bin/env python3
"""Writes RELIABILITY.md's figures from the log of one `scripts/reliability` run.

    scripts/reliability_md.py LOG RELIABILITY.md COMMIT

Replaces each block between `<!-- generated: NAME -->` and `<!-- end: NAME -->` (summary,
faults, kills, hostile) with what the log shows; the prose around them is left as it is.
Fails when the log lacks a part (a rotator's sweep, a suite's tests), or shows a failed test,
a violation, a lockout or a panic (the run failed).
"""

import datetime
import os
import platform
import re
import sys
from collections import OrderedDict

ENGINES = {
    "postgres": "PostgreSQL",
    "redshift": "Redshift",
    "documentdb": "DocumentDB",
    "mysql": "MySQL / MariaDB",
    "redis": "Redis (example)",
}


def die(message):
    sys.exit(f"reliability_md: {message}")


def number(n):
    return f"{n:,}"


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0))
    return f"{cores} cores ({cpu}), {platform.system()} {platform.release()}"


def parse(log):
    sweeps = OrderedDict()
    hostile = OrderedDict()
    kills = []
    kill_total = None
    races = []
    for line in log.splitlines():
        m = re.match(
            r"SWEEP (\S+) (\S+): (\d+) injection points \(.*\), (\d+) first-rotation points, "
            r"(\d+) recovery points, (\d+) scenarios, (\d+) faults not fired, (\d+) checks, "
            r"(\d+) violations, ([\d.]+) s",
            line,
        )
        if m:
            engine, strategy = m.group(1), m.group(2)
            sweeps[(engine, strategy)] = dict(
                points=int(m.group(3)),
                first=int(m.group(4)),
                recovery=int(m.group(5)),
                scenarios=int(m.group(6)),
                not_fired=int(m.group(7)),
                checks=int(m.group(8)),
                violations=int(m.group(9)),
                seconds=float(m.group(10)),
            )
            continue
        m = re.match(r"HOSTILE (\S+) (\S+): Tally \{ cases: (\d+), rotated: (\d+), errors: \{(.*)\}, events: (\d+), failures: \[(.*)\] \}", line)
        if m:
            errors = re.findall(r'"(\w+)": (\d+)', m.group(5))
            hostile[(m.group(1), m.group(2))] = dict(
                cases=int(m.group(3)),
                rotated=int(m.group(4)),
                errors=[(k, int(v)) for k, v in errors],
                events=int(m.group(6)),
                failures=0 if not m.group(7).strip() else m.group(7).count('"') // 2,
            )
            continue
        if line.startswith("| ") and re.match(r"\| (\w+) \| (single-user|alternating-users) \|", line):
            kills.append(line)
            continue
        m = re.match(r"(\d+) killed runs, (\d+) lockouts or unsettled rotations", line)
        if m:
            kill_total = (int(m.group(1)), int(m.group(2)))
            continue
        m = re.match(r"\s+PASS \[.*\] .*suites (races|deadline|late_change)::(\S+)", line)
        if m:
            races.append((m.group(1), m.group(2)))
    panics = len(re.findall(r"panicked at", log))
    failed = re.findall(r"^\s+(?:FAIL|TIMEOUT|SIGSEGV|SIGABRT) \[.*", log, re.M)
    if failed:
        die(f"the run failed: {len(failed)} failed tests, first: {failed[0].strip()}")
    return sweeps, hostile, kills, kill_total, races, panics


def rotator(engine, strategy):
    return f"{ENGINES.get(engine, engine)} {strategy.replace('-', ' ')}"


def blocks(log, commit):
    sweeps, hostile, kills, kill_total, races, panics = parse(log)
    if not sweeps:
        die("no SWEEP line in the log (the fault sweep did not run)")
    if not hostile:
        die("no HOSTILE line in the log")
    if not kills or kill_total is None:
        die("no kill sweep table in the log")
    violations = sum(s["violations"] + s["not_fired"] for s in sweeps.values())
    hostile_failures = sum(h["failures"] for h in hostile.values())
    if violations or hostile_failures or kill_total[1] or panics:
        die(
            f"the run failed: {violations} fault-sweep violations, {hostile_failures} hostile "
            f"failures, {kill_total[1]} lockouts, {panics} panics"
        )
    if set(sweeps) != set(hostile):
        die(f"rotators swept {sorted(sweeps)} differ from those of the hostile matrix {sorted(hostile)}")
    count = lambda suite: sum(1 for s, _ in races if s == suite)
    for suite in ("races", "late_change", "deadline"):
        if count(suite) == 0:
            die(f"no passed test of the {suite} suite in the log")
    today = datetime.date.today().isoformat()
    scenarios = sum(s["scenarios"] for s in sweeps.values())
    checks = sum(s["checks"] for s in sweeps.values())
    cases = sum(h["cases"] + h["events"] for h in hostile.values())
    engines = sorted({e for e, _ in sweeps}, key=lambda e: (list(ENGINES) + [e]).index(e))
    out = {}
    out["summary"] = "\n".join(
        [
            f"Measured by `scripts/reliability --markdown` on {today}, at commit {commit}, on "
            f"{machine()}: every rotator of {', '.join(ENGINES.get(e, e) for e in engines)}.",
            "",
            "| | lockouts | panics | other broken promises |",
            "|---|---|---|---|",
            f"| fault sweep, full plan ({number(len(sweeps))} rotators, {number(scenarios)} scenarios, {number(checks)} checks) | 0 | 0 | 0 |",
            f"| `rotate` killed with SIGKILL ({number(kill_total[0])} runs, `scripts/sweep`) | 0 | 0 | 0 |",
            f"| hostile input ({number(cases)} secrets and events) | 0 | 0 | 0 |",
            f"| races: two rotations, the function and a resume, a put during a rotation ({count('races')} tests) | 0 | 0 | 0 |",
            f"| late changes: held in the network, queued in the server, racing an abort ({count('late_change')} tests) | 0 | 0 | 0 |",
            f"| a server that never answers, through the Lambda function ({count('deadline')} tests) | 0 | 0 | 0 |",
        ]
    )
    rows = [
        "| rotator | injection points (calls of a rotation) | first-rotation points | recovery points | scenarios | checks | violations | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (engine, strategy), s in sweeps.items():
        rows.append(
            f"| {rotator(engine, strategy)} | {s['points']} | {s['first'] or '-'} | "
            f"{s['recovery'] or '-'} | {number(s['scenarios'])} | {number(s['checks'])} | "
            f"{s['violations']} | {s['seconds']:.0f} |"
        )
    out["faults"] = "\n".join(rows)
    out["kills"] = "\n".join(
        [
            "| engine | strategy | runs | finished before kill | killed, nothing in flight | resumed | aborted | abort refused, resumed | recoveries killed | other exits | unsettled | lockouts | seconds |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *kills,
            "",
            f"{number(kill_total[0])} killed runs, {kill_total[1]} lockouts or unsettled rotations.",
        ]
    )
    rows = ["| rotator | cases | events | rotated | typed errors (by kind) |", "|---|---:|---:|---:|---|"]
    for (engine, strategy), h in hostile.items():
        kinds = ", ".join(f"{k} {n}" for k, n in h["errors"])
        rows.append(f"| {rotator(engine, strategy)} | {h['cases']} | {h['events']} | {h['rotated']} | {kinds} |")
    out["hostile"] = "\n".join(rows)
    return out


def main():
    if len(sys.argv) != 4:
        die("usage: reliability_md.py LOG RELIABILITY.md COMMIT")
    log_path, doc_path, commit = sys.argv[1:]
    doc = open(doc_path).read()
    for name, text in blocks(open(log_path, errors="replace").read(), commit).items():
        pattern = re.compile(rf"(<!-- generated: {name} -->\n).*?(<!-- end: {name} -->)", re.S)
        if not pattern.search(doc):
            die(f"{doc_path} has no block `<!-- generated: {name} -->`")
        doc = pattern.sub(lambda m: m.group(1) + text + "\n" + m.group(2), doc)
    open(doc_path, "w").write(doc)
    print(f"reliability_md: wrote {doc_path}")


if __name__ == "__main__":
    main()
