#!/usr/bin/env python3
"""Grades the Autobahn TestSuite reports that tests/autobahn/run.sh produces.

wstest exits 0 whatever happened, even when the peer was down: the reports are the
only verdict. A case passes when its `behavior` and its `behaviorClose` are both OK,
or INFORMATIONAL where the suite itself grades so. UNIMPLEMENTED (permessage-deflate
not negotiated), NON-STRICT, FAILED, any other grade, a missing case or a wrong number
of cases fails the run.

usage: check.py [--server DIR] [--server-dedicated DIR] [--server-wss DIR] [--client DIR]
                [--agent NAME] [--write-docs FILE] ...
Exit status: 0 when every case passes, 1 on any shortfall, 2 when a report is unreadable.
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
from collections import Counter

# Every case of wstest 0.8.2: 301 core (1.* to 10.*) and 216 on permessage-deflate.
EXPECTED_CASES = 517
CORE_CASES = 301
CORE_CATEGORIES = {"1", "2", "3", "4", "5", "6", "7", "9", "10"}
# The wss run (tests/autobahn/fuzzingclient-wss.json) has the core cases only.
CORE_ONLY = {"server-wss"}

CATEGORIES = {
    "1": "Framing",
    "2": "Pings/Pongs",
    "3": "Reserved Bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 Handling",
    "7": "Close Handling",
    "9": "Limits/Performance",
    "10": "Misc",
    "12": "Compression (payloads)",
    "13": "Compression (parameters)",
}

# Columns of the summary, best first. A case is counted under the worse of its two
# grades; anything the suite reports outside this list counts as FAILED.
GRADES = ["OK", "INFORMATIONAL", "UNIMPLEMENTED", "NON-STRICT", "FAILED"]
SHORT = {"OK": "OK", "INFORMATIONAL": "INFO", "UNIMPLEMENTED": "UNIMPL",
         "NON-STRICT": "NON-STRICT", "FAILED": "FAILED"}


def plain(text, limit=400):
    """A report's HTML-flavoured text (descriptions carry <br>) on one line."""
    text = " ".join(re.sub(r"<br\s*/?>", " ", str(text)).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def case_key(case_id):
    return tuple(int(part) for part in case_id.split("."))


def category(case_id):
    return case_id.split(".", 1)[0]


def grade_of(result):
    """The worse of a case's two grades, as one of GRADES."""
    worst = 0
    for grade in (result.get("behavior"), result.get("behaviorClose")):
        rank = GRADES.index(grade) if grade in GRADES else GRADES.index("FAILED")
        worst = max(worst, rank)
    return GRADES[worst]


def allowed(case_id, grade):
    return grade in ("OK", "INFORMATIONAL")


def unreadable(why):
    print("check.py: " + why, file=sys.stderr)
    sys.exit(2)


class Report:
    """One role's report folder: index.json and a JSON file per case."""

    def __init__(self, role, folder, agent):
        self.role = role
        self.folder = folder
        index_path = os.path.join(folder, "index.json")
        try:
            with open(index_path) as f:
                index = json.load(f)
        except (OSError, ValueError) as e:
            unreadable("%s report: cannot read %s: %s" % (role, index_path, e))
        if agent not in index:
            agents = ", ".join(sorted(index)) or "none"
            unreadable("%s report: no results for agent %r (found: %s)" % (role, agent, agents))
        self.cases = index[agent]
        self._details = {}

    def details(self, case_id):
        """The case's own JSON file (description, expectation, result, duration)."""
        if case_id not in self._details:
            name = self.cases[case_id].get("reportfile", "")
            try:
                with open(os.path.join(self.folder, name)) as f:
                    self._details[case_id] = json.load(f)
            except (OSError, ValueError):
                self._details[case_id] = {}
        return self._details[case_id]

    def duration(self, case_id):
        """The case's duration in ms, from its own file (index.json as a fallback)."""
        details = self.details(case_id)
        return details.get("duration", self.cases[case_id].get("duration"))

    def started(self):
        """When the run began (ISO 8601, UTC): the first case's start."""
        if not self.cases:
            return ""
        return self.details(min(self.cases, key=case_key)).get("started", "")


def expected(role, all_ids):
    """The cases report `role` must hold, and how many: a case that one report has and
    another lacks is missing from the other, except 12.* and 13.* from a core-only run."""
    if role in CORE_ONLY:
        return {c for c in all_ids if category(c) in CORE_CATEGORIES}, CORE_CASES
    return all_ids, EXPECTED_CASES


def grade(report, all_ids):
    """Counts by category and grade, and the list of failures: (id, what, details)."""
    ids, count = expected(report.role, all_ids)
    counts = {}
    failures = []
    for case_id in sorted(ids, key=case_key):
        row = counts.setdefault(category(case_id), Counter())
        result = report.cases.get(case_id)
        if result is None:
            row["MISSING"] += 1
            failures.append((case_id, "missing from the report", {}))
            continue
        g = grade_of(result)
        row[g] += 1
        if not allowed(case_id, g):
            what = "behavior %s, behaviorClose %s" % (result.get("behavior"),
                                                      result.get("behaviorClose"))
            failures.append((case_id, what, report.details(case_id)))
    # A core-only run that ran more (12.*, 13.*) ran what it should not have.
    for case_id in sorted(set(report.cases) - set(ids), key=case_key):
        failures.append((case_id, "not a case of this run", {}))
    if len(report.cases) != count:
        failures.insert(0, ("*", "%d cases in the report, expected %d"
                            % (len(report.cases), count), {}))
    return counts, failures


def summary_rows(counts):
    """(category label, counts per column, total) for each category, then the total."""
    columns = GRADES + ["MISSING"]
    rows = []
    total = Counter()
    for cat in sorted(counts, key=int):
        label = "%s.* %s" % (cat, CATEGORIES.get(cat, ""))
        rows.append((label.strip(), [counts[cat][c] for c in columns], sum(counts[cat].values())))
        total.update(counts[cat])
    rows.append(("all", [total[c] for c in columns], sum(total.values())))
    return columns, rows


def print_summary(report, counts, failures):
    columns, rows = summary_rows(counts)
    heads = [SHORT.get(c, c) for c in columns]
    print("\n%s (wstest -m %s), %s" % (
        TITLES[report.role],
        "fuzzingclient" if report.role.startswith("server") else "fuzzingserver",
        report.folder))
    print("  %-32s %s %6s" % ("category", " ".join("%10s" % h for h in heads), "total"))
    for label, values, total in rows:
        print("  %-32s %s %6d" % (label, " ".join("%10d" % v for v in values), total))
    if failures:
        print("  %d failing:" % len(failures))
        for case_id, what, details in failures:
            print("    %-8s %s" % (case_id, what))
            for field in ("description", "expectation", "result", "resultClose"):
                if details.get(field):
                    print("             %s: %s" % (field, plain(details[field])))
    else:
        print("  every case passes")


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    distro = platform.system()
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    distro = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    try:
        rustc = subprocess.run(["rustc", "-V"], capture_output=True, text=True,
                               timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rustc = "rustc (unknown version)"
    return "%s, %d cores, %s, Linux %s, %s" % (cpu, os.cpu_count() or 0, distro,
                                               platform.release(), rustc)


def commit(written):
    """The checked-out commit, marked when the tree has changes (the results are theirs),
    other than in `written`, the file being regenerated."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)" + written],
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + (" with uncommitted changes" if dirty else "")


def markdown_table(columns, rows):
    heads = [SHORT.get(c, c) for c in columns]
    lines = ["| category | " + " | ".join(heads) + " | total |",
             "| --- | " + " | ".join("---:" for _ in heads) + " | ---: |"]
    for label, values, total in rows:
        cells = [str(v) if v else "" for v in values]
        if label == "all":
            label = "**all**"
            cells = ["**%d**" % v if v else "" for v in values]
        total = ("**%d**" if label == "**all**" else "%d") % total
        lines.append("| %s | %s | %s |" % (label, " | ".join(cells), total))
    return "\n".join(lines)


# The reports, in the order of the docs, with their titles.
TITLES = {
    "server": "Server, `--deflate shared`",
    "server-dedicated": "Server, `--deflate dedicated`",
    "server-wss": "Server over wss://, `--deflate off`, cases 1.* to 10.*",
    "client": "Client, permessage-deflate offered",
}


def write_docs(path, reports, graded, args):
    server, client = reports["server"], reports["client"]
    run_date = max(r.started() for r in reports.values())[:10] or \
        datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    out = []
    out.append("# Conformance: the Autobahn TestSuite\n")
    out.append("<!-- Generated by `bash tests/autobahn/run.sh --write-docs` "
               "(tests/autobahn/check.py). Do not edit by hand: rerun it. -->\n")
    out.append("wsreactor is run through every case of the Autobahn TestSuite (`wstest` %s), "
               "the conformance suite for RFC 6455, in both roles:\n" % args.wstest_version)
    out.append("- **server**: `wstest -m fuzzingclient` drives `examples/echo.rs` "
               "(2 reactors, on 127.0.0.1), three times at once: with `--deflate shared`, "
               "with `--deflate dedicated`, and over wss:// (built with `--features tls`, "
               "`--deflate off`, a self-signed ECDSA P-256 certificate made at run time) with "
               "the %d cases of 1.* to 10.* only: the permessage-deflate cases are left "
               "out of that run for CI's time;" % CORE_CASES)
    out.append("- **client**: `wstest -m fuzzingserver` drives `examples/autobahn_client.rs`, "
               "which runs on `wsreactor::client` (the crate's blocking client) and offers "
               "permessage-deflate.\n")
    out.append("A case passes when both its `behavior` and its `behaviorClose` are OK, or "
               "INFORMATIONAL where the suite grades so (it grades 7.1.6, 7.13.1 and 7.13.2 "
               "informational whatever the peer does). UNIMPLEMENTED (the extension not "
               "negotiated), NON-STRICT and FAILED fail. A case counts under the worse of "
               "its two grades. The echo server sends its replies through the default send, "
               "so replies over the threshold (160 bytes shared, 64 dedicated) go out compressed: the 12.* and "
               "13.* cases check the server's compressor as well as its decompressor.\n")
    for role in TITLES:
        if role not in reports:
            continue
        report = reports[role]
        counts, failures = graded[role]
        columns, rows = summary_rows(counts)
        total = rows[-1][1]
        seconds = {"server": args.server_seconds,
                   "server-dedicated": args.server_dedicated_seconds,
                   "server-wss": args.server_wss_seconds,
                   "client": args.client_seconds}[role]
        out.append("## %s\n" % TITLES[role])
        verdict = "every case passes" if not failures else "**%d failing**" % len(failures)
        out.append("%d cases: %d OK, %d INFORMATIONAL, %d UNIMPLEMENTED, %d NON-STRICT, "
                   "%d FAILED; %s. The run took %d s.\n"
                   % (len(report.cases), total[0], total[1], total[2], total[3], total[4],
                      verdict, seconds))
        out.append(markdown_table(columns, rows) + "\n")
        if failures:
            out.append("Failing cases:\n")
            for case_id, what, details in failures:
                desc = plain(details.get("description", ""))
                out.append("- %s: %s%s" % (case_id, what, (". " + desc) if desc else ""))
            out.append("")
        informational = [c for c in sorted(report.cases, key=case_key)
                         if grade_of(report.cases[c]) == "INFORMATIONAL"]
        if informational:
            out.append("Informational cases, with what the suite saw:\n")
            for case_id in informational:
                details = report.details(case_id)
                messages = sum(1 for e in details.get("received", []) if e and e[0] == "message")
                out.append("- %s: %s. wsreactor sent back %s, then close code %s."
                           % (case_id, plain(details.get("description", "")).rstrip("."),
                              {0: "no message", 1: "1 message"}.get(messages,
                                                                   "%d messages" % messages),
                              report.cases[case_id].get("remoteCloseCode")))
            out.append("")

    out.append("## 9.* durations\n")
    out.append("The time wstest measured for each limits and performance case, in ms, from "
               "the opening handshake to the close, loopback, the engine built in release "
               "(server: `--deflate shared`; wss: the run over TLS). They include wstest's "
               "own work in Python 2, which dominates, and the three server runs shared the "
               "machine's two cores. The wss run is over in its first minute, when every "
               "run is busy at once: its column is no measure of what TLS costs "
               "(docs/BENCHMARKS.md has that).\n")
    columns = [("server", server)]
    if "server-wss" in reports:
        columns.append(("wss", reports["server-wss"]))
    columns.append(("client", client))
    out.append("| case | what the suite sends (its own words) | %s |"
               % " | ".join("%s ms" % name for name, _ in columns))
    out.append("| --- | --- | %s |" % " | ".join("---:" for _ in columns))
    ids = sorted((c for c in set(server.cases) | set(client.cases) if category(c) == "9"),
                 key=case_key)
    for case_id in ids:
        desc = (server.details(case_id) if case_id in server.cases
                else client.details(case_id)).get("description", "")
        cells = []
        for _, report in columns:
            d = report.duration(case_id) if case_id in report.cases else None
            cells.append("" if d is None else str(d))
        out.append("| %s | %s | %s |" % (case_id, plain(desc).replace("|", "\\|"),
                                         " | ".join(cells)))
    sums = [sum(r.duration(c) or 0 for c in ids if c in r.cases) for _, r in columns]
    out.append("| **all** | | %s |\n" % " | ".join("**%d**" % v for v in sums))

    out.append("## The run\n")
    out.append("- wstest: %s, installed by the script into `.cache/autobahn/`."
               % (args.wstest_runtime or "AutobahnTestSuite " + args.wstest_version))
    out.append("- date: %s; commit: %s" % (run_date, commit(path)))
    out.append("- machine: %s" % machine())
    out.append("\nTo reproduce (installs wstest on first use, then runs both roles and checks "
               "them; exits non-zero on any failing case):\n")
    out.append("```sh\nbash tests/autobahn/run.sh\n```\n")
    out.append("`--write-docs` also regenerates this file. The reports, with wstest's own "
               "HTML, are in `target/autobahn/server-shared/`, `server-dedicated/`, "
               "`server-wss/` and `client/`.")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print("\nwrote %s" % path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", help="report folder of wstest -m fuzzingclient")
    parser.add_argument("--server-dedicated",
                        help="report folder of wstest -m fuzzingclient, --deflate dedicated")
    parser.add_argument("--server-wss",
                        help="report folder of wstest -m fuzzingclient over wss:// "
                             "(cases 1.* to 10.*)")
    parser.add_argument("--client", help="report folder of wstest -m fuzzingserver")
    parser.add_argument("--agent", default="wsreactor")
    parser.add_argument("--wstest-version", default="0.8.2")
    parser.add_argument("--wstest-runtime", default="",
                        help="wstest's packages and interpreter, for the docs")
    parser.add_argument("--server-seconds", type=int, default=0)
    parser.add_argument("--server-dedicated-seconds", type=int, default=0)
    parser.add_argument("--server-wss-seconds", type=int, default=0)
    parser.add_argument("--client-seconds", type=int, default=0)
    parser.add_argument("--write-docs", metavar="FILE",
                        help="also write the results as Markdown (needs both reports)")
    args = parser.parse_args()
    if not (args.server or args.server_dedicated or args.server_wss or args.client):
        parser.error("give at least one of --server, --server-dedicated, --server-wss, --client")
    if args.write_docs and not (args.server and args.client):
        parser.error("--write-docs needs both --server and --client")

    reports = {}
    for role, folder in (("server", args.server), ("server-dedicated", args.server_dedicated),
                         ("server-wss", args.server_wss), ("client", args.client)):
        if folder:
            reports[role] = Report(role, folder, args.agent)
    # A case that one report has and another lacks is missing from the other (but see
    # expected(): a core-only run is held to the core cases).
    all_ids = set()
    for report in reports.values():
        all_ids |= set(report.cases)

    graded = {role: grade(report, all_ids) for role, report in reports.items()}
    passed = failing = 0
    for role, report in reports.items():
        counts, failures = graded[role]
        print_summary(report, counts, failures)
        failing += len(failures)
        for row in counts.values():
            passed += row["OK"] + row["INFORMATIONAL"]

    if args.write_docs:
        write_docs(args.write_docs, reports, graded, args)
    # The closing line in the plain form CI reads.
    if failing:
        print("\n%d failing (see above)" % failing)
    print("autobahn: %d passed, %d failed" % (passed, failing))
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
