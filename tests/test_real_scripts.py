"""`keras-repro check` on training scripts written like the official Keras examples.

The scripts in ``tests/real_scripts/`` follow keras-io examples and guides
(each names its source in its docstring) in code structure: custom
``train_step`` and ``compile`` with several optimizers, a `Sampling` layer
with its own `SeedGenerator`, a teacher/student `Distiller`, Transformer
layers, ``tf.data`` pipelines with parallel random augmentation, zipped
pipelines and augmentation layers inside the model (SimCLR), a
`PyDataset` with workers, callbacks (`EarlyStopping`, `ReduceLROnPlateau`,
`ModelCheckpoint`), several ``fit`` calls as in fine-tuning, mixed
precision. Only the data (synthetic, same shapes, scaled down) and the model
sizes differ, so that a run takes seconds on a CPU. Each script takes
``--seeding VARIANT``: how (or whether) it is seeded.

Every case runs `check_script` (two fresh processes) and asserts the verdict
a correct check must give, and for a script that is not reproducible, the
cause its report must name.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from keras_repro.check import ScriptError
from keras_repro.check import check_script
from tests.procs import child_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SCRIPTS = Path(__file__).resolve().parent / "real_scripts"

# What a report must say for each kind of cause (regular expressions, case-insensitive).
DIFFERENT_WEIGHTS = r"different (initial )?weights"
INPUT_DATA = r"input data"
ARRAY_SHUFFLE = r"shuffl"
TF_GLOBAL_SEED = r"(TF|TensorFlow)('s)? global seed|tf\.random\.set_seed"
DATA_PIPELINE = r"tf\.data|data pipeline"
PARALLEL_MAP = r"parallel|num_parallel_calls"
# The notes under a reproducible verdict: state that differs but nothing used.
NOTE_GLOBAL_STREAMS = (
    r"note: the global random state \((numpy|python)(, (numpy|python))*\) differs .* nothing in training drew from it"
)
NOTE_IDLE_GENERATOR = r"note: the seed generators? \S+cell/seed_generator.* differs? .* never drawn from"
# A reproducible verdict over randomness that threads draw from in scheduling order.
CAUTION_RACE = r"caution: .*thread scheduling \(data-parallel-random\)"


@dataclasses.dataclass(frozen=True)
class Case:
    """One check: a script, its arguments, and what the report must say.

    Attributes:
        script: file name in ``real_scripts/`` without ``.py``.
        args: the script's arguments; ``"{tmp}"`` is replaced by a fresh
            folder of the test.
        reproducible: the correct verdict.
        says: patterns the summary must match (all of them).
        never_says: patterns the summary must not match (misleading causes
            or false alarms).
        if_agreed: for a script whose runs differ only when threads run in
            another order (`reproducible` is False), the patterns the
            summary must match when the two runs happened to agree: the
            verdict is then "reproducible", and it must carry the caution.
        backend: the Keras backend the checked runs use (the script's own).
    """

    script: str
    args: tuple[str, ...]
    reproducible: bool
    says: tuple[str, ...] = ()
    never_says: tuple[str, ...] = ()
    if_agreed: tuple[str, ...] = ()
    backend: str = "tensorflow"

    @property
    def id(self) -> str:
        return f"{self.script}[{' '.join(a for a in self.args if '{tmp}' not in a)}]"


CASES = [
    # Nothing seeded: the runs start from different weights, and nothing about
    # kernels or op determinism explains that.
    Case("mnist_convnet", ("--seeding", "none"), False, (DIFFERENT_WEIGHTS,), ("op-determinism-off",)),
    Case("mnist_convnet", ("--seeding", "keras"), True),
    # NumPy and Python `random` are unseeded but nothing in training draws
    # from them: a note at most, not a failure.
    Case("mnist_convnet", ("--seeding", "seed_model_tf"), True, (NOTE_GLOBAL_STREAMS,)),
    Case("mnist_convnet", ("--seeding", "mixed_precision"), True),
    # Weights and the Sampling generator are keyed, but Keras' array shuffle
    # draws its op seed from TensorFlow's global seed, which is unset.
    Case("vae", ("--seeding", "seed_model"), False, (INPUT_DATA, ARRAY_SHUFFLE, TF_GLOBAL_SEED)),
    Case("vae", ("--seeding", "keras"), True),
    # Two optimizers kept as attributes by a custom compile; model.optimizer is unused.
    Case("dcgan_overriding_train_step", ("--seeding", "keras"), True),
    # Only the discriminator optimizer (its learning rate) differs in run 2.
    Case(
        "dcgan_overriding_train_step",
        ("--seeding", "keras", "--perturb-d-optimizer", "{tmp}/marker"),
        False,
        (r"d_optimizer",),
    ),
    # Three fit calls (teacher, distiller, student from a clone_model).
    Case("knowledge_distillation", ("--seeding", "keras"), True),
    Case("bidirectional_lstm_imdb", ("--seeding", "seed_model_tf"), True),
    # Explicitly seeded initializers, no dropout, no shuffling: the idle
    # SeedGenerator of each LSTM cell is never drawn from.
    Case(
        "bidirectional_lstm_imdb",
        ("--seeding", "initializers"),
        True,
        (NOTE_IDLE_GENERATOR,),
        ("unseeded-seed-generator", "nothing is seeded"),
    ),
    Case(
        "timeseries_weather_forecasting",
        ("--seeding", "initializers"),
        True,
        (NOTE_IDLE_GENERATOR,),
        ("unseeded-seed-generator", "nothing is seeded"),
    ),
    Case("text_classification_with_transformer", ("--seeding", "seeded_model"), True),
    # Random augmentation layers in a parallel tf.data map: seeding does not help.
    Case(
        "image_classification_from_scratch",
        ("--seeding", "keras"),
        False,
        (INPUT_DATA, DATA_PIPELINE, PARALLEL_MAP),
        if_agreed=(CAUTION_RACE, DATA_PIPELINE, PARALLEL_MAP),
    ),
    # ReduceLROnPlateau, EarlyStopping, ModelCheckpoint, validation_split.
    Case("timeseries_classification_from_scratch", ("--seeding", "keras"), True),
    # The script shuffles with NumPy's global RNG, which seed_model does not touch.
    Case("timeseries_classification_from_scratch", ("--seeding", "seed_model_tf"), False, (INPUT_DATA, r"numpy")),
    # Two fit calls (frozen base, then fine-tuning) of a SeededModel.
    Case("transfer_learning", ("--seeding", "seeded_model"), True),
    # The model is seeded, the augmentation layers in the data pipeline are not
    # (their seeds come from the unseeded Python stream: op determinism cannot help).
    Case(
        "transfer_learning",
        ("--seeding", "seeded_model", "--unseeded-augmentation"),
        False,
        (INPUT_DATA, DATA_PIPELINE),
        (DIFFERENT_WEIGHTS, "op-determinism-off"),
    ),
    # NumPy is seeded, but two worker threads draw from it in scheduler order
    # (Python threads: op determinism cannot help).
    Case(
        "pydataset_workers",
        ("--seeding", "keras", "--workers", "2"),
        False,
        (INPUT_DATA, r"PyDataset", r"worker"),
        ("op-determinism-off",),
        if_agreed=(CAUTION_RACE, r"PyDataset", r"worker"),
    ),
    Case("pydataset_workers", ("--seeding", "keras", "--workers", "1"), True),
    # Two optimizers as attributes, the critic stepped three times per batch,
    # unseeded tf.random.normal in the train step and in a callback.
    Case("wgan_gp", ("--seeding", "keras"), True),
    # fit(shuffle=True) without TF's global seed: the first batch already
    # differs, which is training step 3 (the critic's optimizer steps 3 times).
    Case(
        "wgan_gp",
        ("--seeding", "seed_model"),
        False,
        (INPUT_DATA, ARRAY_SHUFFLE, r"from training step 3 \(fit 0, epoch 0\)"),
        (DIFFERENT_WEIGHTS, "op-determinism-off"),
    ),
    # Feature dictionaries, lookup layers in a tf.data map, Normalization
    # adapted on the shuffled data, a custom layer with Dropout, validation_data.
    Case("structured_data_classification_from_scratch", ("--seeding", "keras"), True),
    # Only the model is seeded; Dataset.shuffle has no seed and TF's global
    # seed is unset: the batches differ from the first step, not the kernels.
    Case(
        "structured_data_classification_from_scratch",
        ("--seeding", "seed_model"),
        False,
        (INPUT_DATA, DATA_PIPELINE, ARRAY_SHUFFLE, r"training step 1\b"),
        (DIFFERENT_WEIGHTS, "op-determinism-off"),
    ),
    # The keras-io reproducibility recipe as written: set_random_seed and op
    # determinism, an unseeded Dataset.shuffle (TF's global seed is set), a
    # parallel map, Dropout, unseeded initializers called before the model.
    Case("reproducibility_recipes", ("--seeding", "recipe"), True),
    # The same without op determinism: on a CPU the kernels still agree.
    Case("reproducibility_recipes", ("--seeding", "no_op_determinism"), True),
    # Seeded initializers alone, as the recipe's conclusion suggests: the
    # weights agree, the unseeded shuffle gives other batches from step 1.
    Case(
        "reproducibility_recipes",
        ("--seeding", "initializers"),
        False,
        (INPUT_DATA, DATA_PIPELINE, ARRAY_SHUFFLE, r"training step 1\b"),
        (DIFFERENT_WEIGHTS, "op-determinism-off", "nothing is seeded"),
    ),
    # Zipped tf.data pipelines with unseeded shuffles, random augmentation
    # layers in the models, a custom layer calling tf.random.uniform, two
    # optimizers as attributes, three fit calls sharing one encoder.
    Case("semisupervised_simclr", ("--seeding", "keras"), True),
    # TF's global seed and seed_model: NumPy and Python differ, and change only
    # between the fits (the next model's layers are built there), not in training.
    Case(
        "semisupervised_simclr",
        ("--seeding", "seed_model_tf"),
        True,
        (NOTE_GLOBAL_STREAMS,),
        (r"training drew from it \(",),
    ),
    # The fine-tuning head is left unseeded: the third fit starts from other
    # weights, from a value drawn before it.
    Case(
        "semisupervised_simclr",
        ("--seeding", "seed_model_tf", "--unseeded-finetuning"),
        False,
        (r"started fit 2 from different weights", r"dense#0/kernel", r"only a value drawn from it before a fit"),
        (INPUT_DATA, "op-determinism-off"),
    ),
    # The backends' own custom train steps: a stateless JAX one, a torch one
    # with loss.backward(); the data and step digests run in both.
    *(
        Case(f"custom_train_step_in_{backend}", ("--seeding", seeding), reproducible, says, never_says, backend=backend)
        for backend in ("jax", "torch")
        for seeding, reproducible, says, never_says in [
            ("none", False, (DIFFERENT_WEIGHTS,), ("op-determinism-off",)),
            ("keras", True, (), ()),
        ]
    ),
]


@pytest.fixture
def script_environment(monkeypatch):
    """The checked runs inherit this process' environment: make it a clean one."""
    clean = child_env()
    for name in list(os.environ):
        if name not in clean:
            monkeypatch.delenv(name)
    for name, value in clean.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_check_verdict_and_cause(case, tmp_path, script_environment, monkeypatch):
    if case.backend != "tensorflow":
        pytest.importorskip(case.backend, reason=f"{case.backend} is not installed (the {case.backend} extra)")
    monkeypatch.setenv("KERAS_BACKEND", case.backend)
    args = [a.replace("{tmp}", str(tmp_path)) for a in case.args]
    try:
        result = check_script(SCRIPTS / f"{case.script}.py", args, runs=2)
    except ScriptError as error:
        pytest.fail(f"{error}; its error output:\n{error.output}")
    summary = result.summary()
    says, never_says = case.says, case.never_says
    if case.if_agreed and result.reproducible:
        says, never_says = case.if_agreed, ()  # the threads ran in the same order both times
    else:
        verdict = "reproducible" if case.reproducible else "NOT reproducible"
        assert result.reproducible is case.reproducible, f"expected {verdict}; the check said:\n{summary}"
    for pattern in says:
        assert re.search(pattern, summary, re.IGNORECASE), f"the report does not name {pattern!r}:\n{summary}"
    for pattern in never_says:
        assert not re.search(pattern, summary, re.IGNORECASE), f"the report says {pattern!r}:\n{summary}"


def test_every_script_names_the_keras_example_it_follows():
    scripts = sorted(SCRIPTS.glob("*.py"))
    assert {case.script for case in CASES} == {path.stem for path in scripts}
    for path in scripts:
        docstring = path.read_text(encoding="utf-8").split('"""')[1]
        assert re.search(r"after keras-io `(examples|guides)/[\w/]+\.py`", docstring, re.IGNORECASE), path.name
