"""The 12-week retention table of `itinera-bench analyses` on ClickHouse 26 (chDB), on the same
stream (the CSV `itinera-bench funnel --csv` writes): cohorts by the ISO week (UTC) of a person's
first `page_view`, coming back = an `Order Completed` in week N after it, as ClickHouse's
`retention()` counts it. Prints chDB's median time and fails unless every cohort's counts equal
Itinera's answer (`itinera query retention --cohort page_view --return "Order Completed"
--period week --periods 12 --format json`).

    python bench/compare_retention.py FILE.csv --itinera ANSWER.json [--runs 5]
"""

import argparse
import json

from compare_funnel import chdb_events, timed

PAGE_VIEW, ORDER_COMPLETED = 0, 4  # EVENTS in the bench
PERIODS = 12


def chdb_retention(csv, runs):
    s = chdb_events(csv)
    week = "toMonday(toDateTime(intDiv({}, 1000), 'UTC'))"
    conds = ", ".join(f"{week.format('ts')} = {week.format('f')} + {7 * k} AND event = {ORDER_COMPLETED}"
                      for k in range(1, PERIODS + 1))
    sql = f"""
        SELECT toString(cohort), count(), {", ".join(f"sum(r[{k + 1}])" for k in range(1, PERIODS + 1))}
        FROM (
            SELECT person, {week.format('any(f)')} AS cohort,
                   retention(ts = f AND event = {PAGE_VIEW}, {conds}) AS r
            FROM b.ev AS t
            INNER JOIN (SELECT person, min(ts) AS f FROM b.ev WHERE event = {PAGE_VIEW} GROUP BY person) AS first
            USING person
            GROUP BY person)
        GROUP BY cohort ORDER BY cohort SETTINGS max_threads = 2"""

    def q():
        out = {}
        for line in str(s.query(sql, "CSV")).split():
            cells = line.replace('"', "").split(",")
            out[cells[0]] = [int(c) for c in cells[1:]]
        return out

    ms, cohorts = timed(q, runs)
    version = str(s.query("SELECT version()", "CSV")).strip().strip('"')
    return f"ClickHouse {version} (chDB) retention()", ms, cohorts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--itinera", required=True, help="Itinera's answer to the same retention table (JSON)")
    a = ap.parse_args()
    engine, ms, ref = chdb_retention(a.csv, a.runs)
    with open(a.itinera) as f:
        ours = {c["cohort"]: c["returned"] for c in json.load(f)["cohorts"]}
    equal = ours == ref
    print(json.dumps({"engine": engine, "median_ms": round(ms, 1), "cohorts": len(ref), "equal": equal}))
    if not equal:
        diff = sorted(k for k in set(ours) | set(ref) if ours.get(k) != ref.get(k))
        raise SystemExit(f"cohorts differ: {diff[:5]} (Itinera {[ours.get(k) for k in diff[:2]]}, "
                         f"ClickHouse {[ref.get(k) for k in diff[:2]]})")


if __name__ == "__main__":
    main()
