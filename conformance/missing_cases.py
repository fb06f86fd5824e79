"""Print the cases the suite was asked to run (its log's "Cases = [...]") that its report lacks.

    python3 conformance/missing_cases.py WSTEST_LOG REPORTS_DIR     -> comma-separated case ids, or nothing
"""

import ast
import glob
import json
import os
import sys


def main(log_path, reports):
    with open(log_path) as log:
        listed = next((line for line in log if line.startswith("Cases = ")), None)
    if listed is None:
        return "*"  # the suite never got as far as its case list
    cases = ast.literal_eval(listed.split("=", 1)[1].strip())
    found = glob.glob(os.path.join(reports, "index.json"))
    reported = set()
    if found:
        for results in json.load(open(found[0])).values():
            reported.update(results)
    return ",".join(case for case in cases if case not in reported)


if __name__ == "__main__":
    print(main(sys.argv[1], sys.argv[2]))
