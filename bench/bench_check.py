"""Wall time of `keras-repro check` vs running the script N times by hand.

The script is examples/reproducible_mlp.py (a SeededModel MLP); by hand it
runs N times in fresh processes with PYTHONHASHSEED=0, as check runs it.
Prints both times and the ratio (target: check adds <= 10%). The overhead
is mostly fixed (the checking process imports TensorFlow once, about 3 s
here; each run adds its trace records and the final comparison), so the
ratio depends on how long the script trains: pass --epochs.

Both are repeated, interleaved, and the medians compared.

Run: python bench/bench_check.py [--epochs 300] [--runs 2] [--repeats 3]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "reproducible_mlp.py"


def timed(command):
    env = {**os.environ, "PYTHONHASHSEED": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    script = [str(SCRIPT), "--epochs", str(args.epochs)]
    timed([sys.executable, *script])  # warm the file cache
    hands, checks = [], []
    for _ in range(args.repeats):
        hands.append(sum(timed([sys.executable, *script]) for _ in range(args.runs)))
        checks.append(timed([sys.executable, "-m", "keras_repro", "check", "--runs", str(args.runs), *script]))
    by_hand, check = statistics.median(hands), statistics.median(checks)
    print(f"{args.runs} runs by hand:      {by_hand:7.2f} s")
    print(f"keras-repro check:    {check:7.2f} s")
    print(f"ratio: {check / by_hand:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
