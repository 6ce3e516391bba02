"""GPU determinism with real kernels: a Conv2D + Embedding model, checked and located.

For a machine with an NVIDIA GPU (TensorFlow backend). It writes a training
script (a two-input functional model: Conv2D layers on 32x32 images, an
Embedding over long sequences with many repeated tokens, Adam) and runs
`keras-repro check --locate` on it twice:

1. op determinism off: the runs must differ, and the location must be a
   backward pass or the optimizer update (where the GPU kernels without a
   deterministic implementation run: Conv2D's filter gradient, the
   Embedding gradient's scatter-add), with advice;
2. ``--deterministic`` (``keras_repro.enable_determinism()`` at the top):
   the check must pass.

It prints both reports, the wall time of each check, and the ratio of the
locating check to the plain one. Exit status 0 when both expectations hold,
1 when one does not, 3 without a GPU (nothing was checked; ``--cpu`` runs
it anyway, to try it).

Run: python bench/gpu_determinism.py [--runs 2] [--epochs 2] [--keep DIR] [--cpu]
"""

import argparse
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SCRIPT = textwrap.dedent(
    '''
    """Conv2D + Embedding on synthetic data, op determinism off unless --deterministic."""
    import argparse

    import keras
    import numpy as np

    import keras_repro as kr

    parser = argparse.ArgumentParser()
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    kr.seed_everything(0)
    if args.deterministic:
        kr.enable_determinism()

    rng = np.random.default_rng(0)
    n = 2048
    images = rng.normal(size=(n, 32, 32, 3)).astype("float32")
    tokens = rng.integers(0, 64, size=(n, 256)).astype("int32")  # few ids, many repeats
    target = rng.normal(size=(n, 1)).astype("float32")

    image_in = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv1")(image_in)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    token_in = keras.Input((256,), dtype="int32", name="tokens")
    t = keras.layers.Embedding(64, 64, name="embedding")(token_in)
    t = keras.layers.GlobalAveragePooling1D(name="token_pool")(t)
    out = keras.layers.Dense(1, name="out")(keras.layers.Concatenate(name="concat")([x, t]))
    model = keras.Model([image_in, token_in], out)
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    model.fit([images, tokens], target, batch_size=256, epochs=args.epochs, shuffle=False, verbose=0)
    '''
)


def timed_check(script: Path, args, runs: int, folder: Path, locate: bool = False):
    from keras_repro.check import check_script

    start = time.perf_counter()
    result = check_script(script, args, runs=runs, keep=folder, locate=locate)
    return result, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--keep", help="folder to keep the script, traces and probes in")
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="run without a GPU too (to try the script: CPU kernels are deterministic, so the first expectation fails)",
    )
    args = parser.parse_args()

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        print(f"GPU: {details.get('device_name', gpus[0].name)}; TensorFlow {tf.__version__}")
    elif args.cpu:
        print(f"no GPU: running on the CPU (--cpu); TensorFlow {tf.__version__}")
    else:
        print("no GPU visible to TensorFlow: nothing checked (pass --cpu to try the script anyway)")
        return 3

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="gpu-determinism-"))
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "conv_embedding.py"
    script.write_text(SCRIPT, encoding="utf-8")
    ok = True

    epochs = ["--epochs", str(args.epochs)]
    plain, plain_s = timed_check(script, epochs, args.runs, folder / "off")
    located, located_s = timed_check(script, epochs, args.runs, folder / "off-locate", locate=True)
    print("\n== op determinism off")
    print(located.summary())
    print(f"check {plain_s:.1f} s, check --locate {located_s:.1f} s, ratio {located_s / plain_s:.2f}")
    where = located.location
    if plain.reproducible or located.reproducible:
        print("EXPECTED the runs to differ; they agreed (these kernels ran deterministically here)")
        ok = False
    elif where is None or where.stage not in ("backward", "optimizer"):
        print(f"EXPECTED a backward or optimizer location; got {where and where.stage}")
        ok = False
    else:
        print(f"located: stage {where.stage}, layer {where.layer}, op types {', '.join(where.op_types)}")
        print(f"advice: {' '.join(where.advice) or '(none)'}")

    on, on_s = timed_check(script, [*epochs, "--deterministic"], args.runs, folder / "on")
    print("\n== op determinism on")
    print(on.summary())
    print(f"check {on_s:.1f} s")
    if not on.reproducible:
        print("EXPECTED the runs to agree with op determinism on")
        ok = False
    print(f"\nkept in {folder}")
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
