#!/usr/bin/env python3
"""Compare two Autobahn|Testsuite fuzzingclient reports case by case.

    compare.py DIRECT_OUTDIR THROUGH_OUTDIR [--expect-differences]

Each OUTDIR is one made by ../shared/autobahn/run.sh (spec.json +
reports/servers/index.json + one JSON report per case).  For every case the
"through" side (the echo server behind wsgate) must have the same `behavior`,
`behaviorClose` and remote close code (the close code the server/peer sent,
`remoteCloseCode`, taken from the case's JSON report, else from index.json) as
the "direct" side (the same echo server, no gateway).

stdout, last line, one of:
    autobahn: through wsgate identical to direct on N cases          (exit 0)
    autobahn: K of N cases differ between direct and through wsgate  (exit 1)
preceded, when cases differ, by one block per differing case with both
verdicts, close codes/reasons and the report files to look at.
Exit 2: the direct side has no usable report (nothing to compare against), or
some selected case has no result on the direct side.

With --expect-differences (negative control) the exit status is inverted:
0 when at least one case differs, 1 when none does.

Run it with the Autobahn venv's python so that the selected case list can be
computed from spec.json exactly as wstest does (falls back to the union of the
cases found in both reports otherwise).
"""
import json
import os
import sys

CLOSE_FIELDS = ("remoteCloseCode",)
DETAIL_LIMIT = 60


def case_key(cid):
    return [int(x) for x in cid.split(".")]


def load_side(outdir):
    """Returns (agent, results, reports_dir) or raises ValueError with a reason."""
    reports = os.path.join(outdir, "reports", "servers")
    index_path = os.path.join(reports, "index.json")
    if not os.path.isfile(index_path):
        raise ValueError("no report (%s missing)" % index_path)
    try:
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError("unreadable %s: %s" % (index_path, e))
    agent = None
    try:
        with open(os.path.join(outdir, "spec.json"), encoding="utf-8") as f:
            agent = json.load(f)["servers"][0]["agent"]
    except (OSError, ValueError, KeyError, IndexError):
        pass
    if agent is None or agent not in index:
        if len(index) != 1:
            raise ValueError("cannot tell which agent to read in %s (agents: %s)"
                             % (index_path, ", ".join(sorted(index)) or "none"))
        agent = next(iter(index))
    return agent, index[agent], reports


def selected_cases(outdir):
    """The case ids selected by spec.json, as wstest computes them; None if unknown."""
    try:
        from autobahntestsuite.case import (Cases, CaseCategories, CaseSubCategories,
                                            CaseSetname, CaseBasename)
        from autobahntestsuite.caseset import CaseSet
        with open(os.path.join(outdir, "spec.json"), encoding="utf-8") as f:
            spec = json.load(f)
        return set(CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories,
                           CaseSubCategories).parseSpecCases(spec))
    except Exception:  # not the venv's python, or no spec: fall back to the reports
        return None


def case_report(reports, result):
    """The case's own JSON report (dict), or {} when absent/unreadable."""
    name = result.get("reportfile")
    if not name:
        return {}
    try:
        with open(os.path.join(reports, name), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def verdict(reports, result):
    """(behavior, behaviorClose, remoteCloseCode, full case report) of one case."""
    if result is None:
        return None
    rep = case_report(reports, result)
    code = rep["remoteCloseCode"] if "remoteCloseCode" in rep else result.get("remoteCloseCode")
    return (result.get("behavior"), result.get("behaviorClose"), code, rep)


def fmt(v):
    if v is None:
        return "no result"
    return "%s / %s, remote close %s" % (v[0], v[1], "none" if v[2] is None else v[2])


def detail(label, v, reports, result):
    if v is None:
        return ["    %-8s (case not run or no result)" % label]
    rep = v[3]
    lines = ["    %-8s %s" % (label, fmt(v))]
    if rep:
        lines.append("             result: %s" % rep.get("result"))
        lines.append("             close:  %s; wasClean=%s%s; local close %s %r; remote reason %r"
                     % (rep.get("resultClose"), rep.get("wasClean"),
                        (" (%s)" % rep["wasNotCleanReason"]) if rep.get("wasNotCleanReason") else "",
                        rep.get("localCloseCode"), rep.get("localCloseReason"),
                        rep.get("remoteCloseReason")))
        lines.append("             report: %s" % os.path.join(reports, result["reportfile"]))
    return lines


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    flags = {a for a in argv[1:] if a.startswith("--")}
    if len(args) != 2 or flags - {"--expect-differences"}:
        sys.stderr.write(__doc__)
        return 2
    expect_diff = "--expect-differences" in flags
    direct_dir, through_dir = args

    try:
        _, direct, d_reports = load_side(direct_dir)
    except ValueError as e:
        print("autobahn: direct run unusable: %s" % e)
        return 2
    if not direct:
        print("autobahn: direct run has an empty report (%s)" % d_reports)
        return 2
    try:
        _, through, t_reports = load_side(through_dir)
    except ValueError as e:
        print("autobahn: through-wsgate run has no report: %s" % e)
        through, t_reports = {}, os.path.join(through_dir, "reports", "servers")

    selected = selected_cases(direct_dir)
    if selected is None:
        selected = set(direct) | set(through)
    missing_direct = sorted(selected - set(direct), key=case_key)
    if missing_direct:
        print("autobahn: direct run incomplete, %d selected cases have no result: %s"
              % (len(missing_direct), " ".join(missing_direct)))
        return 2

    cases = sorted(selected | set(direct) | set(through), key=case_key)
    diffs = []
    for cid in cases:
        dv = verdict(d_reports, direct.get(cid))
        tv = verdict(t_reports, through.get(cid))
        if dv is None or tv is None or dv[:3] != tv[:3]:
            diffs.append((cid, dv, tv))

    if not diffs:
        print("autobahn: through wsgate identical to direct on %d cases" % len(cases))
        return 1 if expect_diff else 0

    for i, (cid, dv, tv) in enumerate(diffs):
        if i == DETAIL_LIMIT:
            print("  ... %d more: %s" % (len(diffs) - DETAIL_LIMIT,
                                         " ".join(c for c, _, _ in diffs[DETAIL_LIMIT:])))
            break
        print("  case %s: direct %s | through %s" % (cid, fmt(dv), fmt(tv)))
        desc = (dv or tv)[3].get("description") if (dv or tv) else None
        if desc:
            print("    what:    %s" % " ".join(desc.split()))
        for line in detail("through:", tv, t_reports, through.get(cid)):
            print(line)
    print("autobahn: %d of %d cases differ between direct and through wsgate: %s"
          % (len(diffs), len(cases), " ".join(c for c, _, _ in diffs)))
    return 0 if expect_diff else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
