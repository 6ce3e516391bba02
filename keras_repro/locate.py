"""Where a divergence between two runs enters: data, a layer, its gradient, or the optimizer.

`keras_repro.check.check_script` tells at which record two runs of a script
first differ. `locate` narrows that down to the place where the difference
is made, by running the script again:

1. if the runs were recorded per epoch (or every N batches) without step
   digests that found it (`keras_repro.divergence.Divergence.step_exact`),
   twice more recording every batch, to find the first training step ``S``
   whose record differs;
2. twice more with a *probe* at step ``S``: the steps before it run
   compiled, as in the checked runs (an eager step can round differently
   from a compiled one); the step that makes the training step reach ``S``
   (the largest optimizer step count; a custom ``train_step`` may step an
   optimizer several times, and then the step is made eager once the last
   step's stride can reach ``S``) runs eagerly, and before it the probe
   records, without changing what the
   step computes (every variable and global random stream it touches is put
   back),

   - a digest of each part of the batch (``x``, ``y``, ``sample_weight``);
   - for a model that uses Keras' own ``train_step``: the inputs and output
     of every layer call in execution order (by stable layer path,
     `keras_repro.paths.layer_paths`), the loss, and the gradient of the
     loss with respect to every recorded layer input and output and every
     trainable variable;
   - every variable's digest before and after the real step;

   then training stops and the script ends;
3. the two probes are compared. The answer is the earliest place where a
   stage's inputs agree and its outputs differ: the batch (``"data"``), then
   the forward pass of a layer (its inputs agree, its output differs), then
   the backward pass of a layer (walking layers in reverse execution order:
   the gradient arriving at its output agrees, the gradient with respect to
   its inputs or variables differs), then the optimizer update (the
   gradients agree, the new values differ). A custom ``train_step``, or a
   probe in which nothing differs, gives ``"outside"`` with what the
   variables say.

The located layer's op types (its call traced in a `tf.function`, with its
gradient for the backward stage) are listed, and op types with known
nondeterministic GPU kernels come with advice.

Example:

```python
from keras_repro.check import check_script
from keras_repro.locate import locate

result = check_script("train.py", keep="check-out")
if not result.reproducible:
    where = locate("train.py", (), result.divergence, every="epoch", folder="check-out")
    print(where.message)
```
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras

from keras_repro import _validate
from keras_repro._probe_compare import NONDETERMINISTIC_OPS
from keras_repro._probe_compare import STAGES
from keras_repro._probe_compare import Location
from keras_repro._probe_compare import compare_probes
from keras_repro._probe_compare import read_probe
from keras_repro._runner import run_once
from keras_repro.divergence import Divergence
from keras_repro.trace import diff_traces

__all__ = ["NONDETERMINISTIC_OPS", "STAGES", "Location", "compare_probes", "locate", "read_probe"]


def _check_divergence(divergence: Any) -> Divergence:
    return _validate.check_instance(
        "divergence", divergence, Divergence, "Expected the Divergence of a check (CheckResult.divergence)"
    )


def locate(
    script: str | os.PathLike,
    args: Sequence[str],
    divergence: Divergence,
    every: str | int,
    folder: str | os.PathLike,
    progress: Callable[[str], None] | None = None,
    deterministic: bool = False,
) -> Location:
    """Finds where the divergence of two runs of `script` enters, by running it again.

    Costs two runs up to the first differing step plus one probed step each,
    and, when the runs were not recorded every batch, two more runs
    recording every batch (see the module docstring).

    Args:
        script: the training script (as given to `check_script`).
        args: its command-line arguments.
        divergence: the `keras_repro.trace.Divergence` the check found.
        every: how the checked runs were recorded (``"epoch"``,
            ``"batch"`` or N batches).
        folder: where to keep the new runs' traces, output and probes
            (in ``locate/`` inside it).
        progress: called with a short line as runs go.
        deterministic: start the runs with deterministic kernels on, as the
            checked runs were (``check_script(deterministic=True)``).

    Returns:
        A `Location`.

    Raises:
        TypeError: `divergence` is not a `Divergence`, or `folder` not a path.
        ValueError: a bad `every`.
        keras_repro.check.ScriptError: the script failed in a run.

    Example:

    ```python
    from keras_repro.check import check_script
    from keras_repro.locate import locate

    result = check_script("train.py", keep="out")
    if not result.reproducible:
        print(locate("train.py", (), result.divergence, "epoch", "out").message)
    ```
    """
    divergence = _check_divergence(divergence)
    every = _validate.check_every(every)
    script, root = Path(os.fspath(script)), _validate.check_path("folder", folder) / "locate"
    if keras.backend.backend() not in ("tensorflow", "jax", "torch"):
        return Location(
            "outside",
            None,
            None,
            divergence.variables,
            (),
            (),
            (
                "Locating a divergence needs the TensorFlow, JAX or PyTorch backend "
                f"(this is {keras.backend.backend()}): "
                f"{divergence.message}"
            ),
            divergence.step,
            divergence.fit,
        )
    if divergence.kind == "start":
        return Location(
            "outside",
            None,
            None,
            divergence.variables,
            (),
            (),
            (
                f"The runs differ before training (at the start of fit {divergence.fit}): there is no "
                "training step to probe; the model was built, initialized or restored differently."
            ),
            None,
            divergence.fit,
        )

    def twice(name: str, run_args: Sequence[str], script_path: Path) -> None:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = [
                pool.submit(
                    run_once,
                    script_path,
                    run_args,
                    run,
                    root / f"{name}{run}",
                    "batch",
                    progress,
                    deterministic=deterministic,
                )
                for run in (1, 2)
            ]
            for future in futures:
                future.result()

    if every != "batch" and not divergence.step_exact:
        if progress is not None:
            progress("locate: running the script twice more, recording every batch")
        twice("batch", list(args), script)
        divergence = diff_traces(root / "batch1" / "trace.jsonl", root / "batch2" / "trace.jsonl").divergence
        if divergence is None:
            return Location(
                "outside",
                None,
                None,
                (),
                (),
                (),
                (
                    "Recorded every batch, two more runs agree: the difference did not show up again "
                    "(it is intermittent, or depends on the recording frequency)."
                ),
            )
    if divergence.kind in ("start", "length") or divergence.step is None or divergence.step < 1:
        return Location(
            "outside",
            None,
            None,
            divergence.variables,
            (),
            (),
            (f"Recorded every batch, the runs first differ in a way no training step explains: {divergence.message}"),
            divergence.step,
            divergence.fit,
        )
    step, fit = divergence.step, divergence.fit
    if progress is not None:
        progress(f"locate: probing training step {step} of fit {fit} in two more runs")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(
                run_once,
                script,
                list(args),
                run,
                root / f"probe{run}",
                "epoch",
                progress,
                (root / f"probe{run}" / "probe.json", fit, step),
                deterministic=deterministic,
            )
            for run in (1, 2)
        ]
        for future in futures:
            future.result()
    probes = []
    for run in (1, 2):
        probe = root / f"probe{run}" / "probe.json"
        if not probe.exists():
            return Location(
                "outside",
                None,
                None,
                divergence.variables,
                (),
                (),
                (
                    f"Probe run {run} wrote no probe of training step {step} of fit {fit}: it trained for "
                    "fewer steps, or a compiled step went past it (a train_step that steps an optimizer "
                    f"more than once): {divergence.message}"
                ),
                step,
                fit,
            )
        probes.append(read_probe(probe))
    location = compare_probes(*probes)
    if location.stage == "outside" and not location.variables:  # fall back to the records
        location = dataclasses.replace(
            location,
            variables=divergence.variables,
            message=f"{location.message} Recorded every batch: {divergence.message}",
        )
    return location
