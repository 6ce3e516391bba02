"""Import cost of keras_repro on top of keras.

Times `import keras` and `import keras; import keras_repro` in fresh
interpreters, alternating, and prints the medians and the difference
(target: <= 50 ms). Run: python bench/bench_import.py

`import keras` (with TensorFlow) leaves ~350,000 objects and a full
garbage collection due (~0.2 s here), which whatever code runs next pays,
so the in-process figure is measured after a `gc.collect()` that is not
timed; the difference of the two totals includes that collection when it
falls inside keras_repro's import.
"""

import os
import statistics
import subprocess
import sys

REPEATS = 9
PROBE = (
    "import gc, time; t = time.perf_counter(); import keras; t0 = time.perf_counter(); gc.collect(); "
    "t1 = time.perf_counter(); {extra}; t2 = time.perf_counter(); "
    "print(t2 - t - (t1 - t0), t2 - t1)"
)


def run(extra):
    # As installed packages are used: with bytecode caches (Keras' come
    # precompiled from its install; ours are written by the warm-up).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(extra=extra)], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    return float(out[0]), float(out[1])


def main():
    base, ours, increments = [], [], []
    run("import keras_repro")  # warm the file cache, write keras_repro's bytecode
    for _ in range(REPEATS):
        base.append(run("pass")[0])
        total, after_keras = run("import keras_repro")
        ours.append(total)
        increments.append(after_keras)
    b, o = statistics.median(base), statistics.median(ours)
    inc = statistics.median(increments)
    print(f"import keras:                    {b * 1e3:8.1f} ms (median of {REPEATS})")
    print(f"import keras; import keras_repro: {o * 1e3:8.1f} ms")
    print(
        f"keras_repro on top of keras:     {inc * 1e3:8.1f} ms measured in-process "
        f"({(o - b) * 1e3:+.1f} ms by difference), ratio {o / b:.3f} (target: <= 50 ms)"
    )


if __name__ == "__main__":
    main()
