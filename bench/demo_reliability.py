"""The newcomer's path, N times: fresh clone -> `make demo` -> `make demo-down` -> is anything left?

    python3 bench/demo_reliability.py [--runs 10] [--source <repo or clone URL>] [--keep]

Each run clones `--source` (default: this checkout) into a new folder at the HEAD seen at the start, alternating
between /tmp and another place (/var/tmp), runs `make demo` there exactly as a newcomer would (its own
virtualenv; the built binaries come from the shared cache, ~/.cache/lepton-operator, as for any clone),
then `make demo-down`, then looks for anything of that clone still on the machine: processes whose
command line or working folder is inside the clone, network namespaces, links and routes of the real nodes,
mounts under the clone. Slow (a few minutes a run): not part of CI. Only stdlib: runs with any python3.

Writes bench/results/demo-reliability.json and prints one line a run and a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "demo-reliability.json"
PLACES = (Path("/tmp"), Path("/var/tmp"))
#: where kubelet and containerd leave things whatever their configuration (the real nodes' teardown
#: removes them when it made them; none of them exists on this machine before)
RUNTIME_PATHS = (Path("/var/lib/kubelet"), Path("/var/lib/cni/results"), Path("/run/containerd/s"))


def sh(argv: list[str], cwd: Path, log: Path, timeout: float) -> tuple[int, float]:
    """Run, appending output to `log`; (exit code, seconds). A timeout counts as exit 124."""
    start = time.monotonic()
    with log.open("ab") as f:
        f.write(f"\n$ {' '.join(argv)}\n".encode())
        f.flush()
        try:
            rc = subprocess.run(argv, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    return rc, time.monotonic() - start


def leftovers(clone: Path) -> list[str]:
    """Anything of this clone still on the machine after demo-down."""
    found = []
    needle = str(clone).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            cwd = os.readlink(entry / "cwd").encode()
        except OSError:
            continue
        if needle in cmdline or cwd.startswith(needle):
            argv = cmdline.replace(b"\0", b" ").decode(errors="replace")[:200]
            found.append(f"process {entry.name}: {argv}")
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
    found += [f"netns {n.split()[0]}" for n in netns if n.startswith("lp-")]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.splitlines()
    names = [ln.split(":")[1].strip().split("@")[0] for ln in links]
    found += [f"link {n}" for n in names if n.startswith(("lpbr-", "lep"))]  # the old process node's, real nodes'
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    found += [f"route {r}" for r in routes.splitlines() if "198.18." in r or "198.19." in r]
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    found += [f"mount {m.split()[4]}" for m in mounts if m.split()[4].startswith(str(clone) + "/")]
    # real nodes: cgroups, and what kubelet and containerd keep in fixed system folders
    found += [f"cgroup {c}" for c in Path("/sys/fs/cgroup").glob("*/lepton-*")]
    found += [f"path {p}" for p in RUNTIME_PATHS if p.exists()]
    return found


def one_run(i: int, source: str, commit: str, keep: bool, timeout: float) -> dict[str, object]:
    place = PLACES[i % len(PLACES)]
    clone = Path(tempfile.mkdtemp(prefix=f"lepton-demo-{i}-", dir=place))
    log = clone.with_name(clone.name + ".log")
    rec: dict[str, object] = {"run": i, "clone": str(clone), "log": str(log)}
    rc, _ = sh(["git", "clone", "--quiet", source, str(clone)], place, log, 300)
    rc = rc or sh(["git", "checkout", "--quiet", commit], clone, log, 60)[0]  # every run the same commit
    if rc:
        return {**rec, "passed": False, "stage": "clone", "exitCode": rc}
    rc_demo, secs = sh(["make", "demo"], clone, log, timeout)
    rc_down, down_secs = sh(["make", "demo-down"], clone, log, 300)
    left = leftovers(clone)
    passed = rc_demo == 0 and rc_down == 0 and not left
    rec |= {
        "passed": passed,
        "demoExitCode": rc_demo,
        "demoSeconds": round(secs, 1),
        "downExitCode": rc_down,
        "downSeconds": round(down_secs, 1),
        "leftovers": left,
    }
    if passed and not keep:
        shutil.rmtree(clone, ignore_errors=True)
    return rec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--source", default=str(REPO), help="what to clone (default: this checkout's HEAD)")
    p.add_argument("--keep", action="store_true", help="keep passing clones too (failing ones are kept)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds allowed for one `make demo`")
    args = p.parse_args(argv)
    head = subprocess.run(["git", "-C", args.source, "rev-parse", "HEAD"], capture_output=True, text=True)
    commit = head.stdout.strip()
    runs = []
    for i in range(args.runs):
        rec = one_run(i, args.source, commit, args.keep, args.timeout)
        runs.append(rec)
        print(json.dumps(rec), flush=True)
    passed = sum(1 for r in runs if r["passed"])
    summary = {
        "commit": commit,
        "runs": len(runs),
        "passed": passed,
        "demoSeconds": sorted(float(str(r.get("demoSeconds", 0))) for r in runs),
        "details": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{passed} of {len(runs)} fresh-clone demos passed with nothing left behind ({RESULTS})")
    return 0 if passed == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
