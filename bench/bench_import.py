"""Import cost of keras_repro on top of keras.

Times `import keras` and `import keras; import keras_repro` in fresh
interpreters, alternating, and prints the medians and the difference
(target: <= 50 ms). Run: python bench/bench_import.py
"""

import os
import statistics
import subprocess
import sys

REPEATS = 9
PROBE = (
    "import time; t = time.perf_counter(); import keras; t1 = time.perf_counter(); {extra}; "
    "print(time.perf_counter() - t, time.perf_counter() - t1)"
)


def run(extra):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(extra=extra)], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    return float(out[0]), float(out[1])


def main():
    base, ours, increments = [], [], []
    run("pass")  # warm the file cache
    for _ in range(REPEATS):
        base.append(run("pass")[0])
        total, after_keras = run("import keras_repro")
        ours.append(total)
        increments.append(after_keras)
    b, o = statistics.median(base), statistics.median(ours)
    inc = statistics.median(increments)
    print(f"import keras:                    {b * 1e3:8.1f} ms (median of {REPEATS})")
    print(f"import keras; import keras_repro: {o * 1e3:8.1f} ms")
    print(f"keras_repro on top of keras:     {inc * 1e3:8.1f} ms measured in-process "
          f"({(o - b) * 1e3:+.1f} ms by difference), ratio {o / b:.3f} (target: <= 50 ms)")


if __name__ == "__main__":
    main()
