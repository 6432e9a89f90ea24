"""Static and dependency checks of ``make reliability``: bandit over our code, pip-audit over
the locked dependencies; one summary line each, and the exit code says whether to stop.

bandit fails the target on any issue of medium or high severity; pip-audit on any known
vulnerability. A dependency pip-audit could not look up is counted and printed, never hidden:
an audit that looked nothing up proves nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"


def bandit() -> int:
    run = subprocess.run([str(BIN / "bandit"), "-r", "toporder_sync", "flows", "tasks", "-q",
                          "-f", "json"], cwd=ROOT, capture_output=True, text=True)
    report = json.loads(run.stdout)
    by_severity: dict[str, int] = {}
    for issue in report["results"]:
        by_severity[issue["issue_severity"]] = by_severity.get(issue["issue_severity"], 0) + 1
    serious = [i for i in report["results"] if i["issue_severity"] in ("MEDIUM", "HIGH")]
    for issue in serious:
        print(f"  bandit {issue['test_id']} {issue['issue_severity']}: {issue['filename']}:"
              f"{issue['line_number']} {issue['issue_text']}")
    print(f"bandit: {len(report['results'])} issues "
          f"({', '.join(f'{k.lower()} {v}' for k, v in sorted(by_severity.items())) or 'none'}); "
          f"{len(serious)} medium or high")
    return 1 if serious else 0


def pip_audit() -> int:
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as requirements:
        subprocess.run([str(BIN / "uv"), "export", "--frozen", "--format", "requirements-txt",
                        "--no-hashes", "--no-emit-project", "-q", "-o", requirements.name],
                       cwd=ROOT, check=True)
        run = subprocess.run([str(BIN / "pip-audit"), "-r", requirements.name,
                              "--progress-spinner", "off", "-f", "json"],
                             cwd=ROOT, capture_output=True, text=True)
    try:
        report = json.loads(run.stdout)
    except ValueError:
        print(f"pip-audit: did not run ({run.stderr.strip().splitlines()[-1:]})")
        return 1
    deps = report["dependencies"]
    vulnerable = [d for d in deps if d.get("vulns")]
    skipped = [d for d in deps if "skip_reason" in d]
    for dep in vulnerable:
        ids = ", ".join(v["id"] for v in dep["vulns"])
        print(f"  pip-audit {dep['name']} {dep['version']}: {ids}")
    print(f"pip-audit: {len(deps)} locked dependencies, {len(vulnerable)} with known "
          f"vulnerabilities, {len(skipped)} not found on the index and not audited")
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(max(bandit(), pip_audit()))
