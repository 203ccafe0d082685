"""The write stall a tool causes on the source, measured from the writers' side.

For each round, `cutover lab load` starts eight application writers on twenty hot rows
of legacy (each transaction moves a balance between two of them), the tool runs once,
and the load is stopped: its report gives the longest time the writers saw no commit.
Used by bench/checksum and bench/snapshot (`--stall-rounds N`).
"""

import json
import signal
import subprocess
import time


def measure(bin_path, env, label, run_tool, rounds, rate=0):
    """Run `run_tool()` `rounds` times under the hot-row load (at most `rate`
    transactions a second; 0: as fast as the writers can); return the figures."""
    gaps, failures = [], []
    for round_number in range(1, rounds + 1):
        load = subprocess.Popen([bin_path, "lab", "load", "--duration", "600s", "--output", "json",
                                 f"--rate={rate}"],
                                env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        try:
            error = run_tool()
        except Exception as exception:  # a tool that failed is a result too
            error = str(exception)
        time.sleep(0.5)
        load.send_signal(signal.SIGINT)
        out, _ = load.communicate(timeout=30)
        report = json.loads(out)
        gaps.append(report["longest_gap_ms"])
        if error:
            failures.append({"round": round_number, "error": error[:300]})
    return {
        "tool": label,
        "load_rate_per_s": rate or "unpaced",
        "rounds": rounds,
        "succeeded": rounds - len(failures),
        "longest_write_stall_ms": max(gaps),
        "write_stall_ms_per_round": gaps,
        "failures": failures,
    }
