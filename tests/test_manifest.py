"""Environment manifest: content, JSON safety, git revision, diff classification, files."""

import json
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_repro as kr
from keras_repro.manifest import MISSING
from keras_repro.manifest import read_manifest
from keras_repro.manifest import write_manifest


def test_manifest_is_json_safe_and_describes_this_process():
    m = kr.manifest()
    assert json.loads(json.dumps(m, allow_nan=False)) == m
    assert m["keras"]["version"] == keras.__version__
    assert m["keras"]["backend"] == keras.backend.backend()
    assert m["numpy"] == np.__version__
    assert m["python"]["version"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert m["determinism"]["enabled"] == kr.determinism_enabled()
    assert m["root_seed"] == kr.get_root_seed()
    tf_info = m["tensorflow"]
    import tensorflow as tf

    assert tf_info["version"] == tf.__version__
    assert set(tf_info["build"]) >= {"is_cuda_build"}
    assert isinstance(tf_info["threads"]["intra_op"], int)
    assert [d["type"] for d in m["devices"]][0] == "CPU"
    assert m["cpu"]["count"] >= 1 and isinstance(m["cpu"]["isa"], list)
    assert "XLA_FLAGS" in m["env"] and "TF_ENABLE_ONEDNN_OPTS" in m["env"]


def test_manifest_records_environment_variables(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_deterministic_ops=true")
    assert kr.manifest()["env"]["XLA_FLAGS"] == "--xla_gpu_deterministic_ops=true"


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_revision_of_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["-c"])
    monkeypatch.chdir(tmp_path)
    assert kr.manifest()["git"] is None  # not a repository
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True, env=env)
    (tmp_path / "f.txt").write_text("x")
    subprocess.run(["git", "add", "f.txt"], cwd=tmp_path, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "c"], cwd=tmp_path, check=True, env=env)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert kr.manifest()["git"] == {"revision": head, "dirty": False}
    (tmp_path / "f.txt").write_text("y")
    assert kr.manifest()["git"] == {"revision": head, "dirty": True}


def test_identical_manifests_have_no_differences():
    m = kr.manifest()
    assert kr.diff_manifests(m, json.loads(json.dumps(m))) == []


def test_diff_classifies_what_can_change_results():
    a = kr.manifest()
    b = json.loads(json.dumps(a))
    b["hostname"] = "elsewhere"
    b["created"] = "2000-01-01T00:00:00+00:00"
    b["root_seed"] = 12345
    b["tensorflow"]["build"]["cudnn_version"] = "0.1"
    b["tensorflow"]["threads"]["intra_op"] = 7
    b["env"]["TF_ENABLE_ONEDNN_OPTS"] = "0" if a["env"]["TF_ENABLE_ONEDNN_OPTS"] != "0" else "1"
    b["determinism"]["enabled"] = not a["determinism"]["enabled"]
    b["brand_new_key"] = 1
    differences = {d.key: d for d in kr.diff_manifests(a, b)}
    assert set(differences) == {
        "hostname",
        "created",
        "root_seed",
        "tensorflow.build.cudnn_version",
        "tensorflow.threads.intra_op",
        "env.TF_ENABLE_ONEDNN_OPTS",
        "determinism.enabled",
        "brand_new_key",
    }
    assert not differences["hostname"].affects_results and not differences["created"].affects_results
    for key in (
        "root_seed",
        "tensorflow.build.cudnn_version",
        "tensorflow.threads.intra_op",
        "env.TF_ENABLE_ONEDNN_OPTS",
        "determinism.enabled",
    ):
        assert differences[key].affects_results, key
    assert differences["brand_new_key"].affects_results  # unknown: not known to be harmless
    assert differences["brand_new_key"].a == MISSING and differences["brand_new_key"].b == 1
    assert differences["root_seed"].b == 12345 and "root seed" in differences["root_seed"].why
    ordered = kr.diff_manifests(a, b)
    assert [d.affects_results for d in ordered] == sorted((d.affects_results for d in ordered), reverse=True)
    assert "can change results" in str(differences["root_seed"])


def test_diff_rejects_non_manifests():
    with pytest.raises(TypeError, match="Invalid manifest b"):
        kr.diff_manifests({}, "manifest.json")


def test_manifest_file_round_trip(tmp_path):
    path = tmp_path / "env.json"
    written = write_manifest(path)
    assert read_manifest(path) == written


@pytest.mark.parametrize(
    "damage, error, message",
    [
        (lambda text: "", ValueError, "empty"),
        (lambda text: text[: len(text) // 2], ValueError, "corrupt or truncated"),
        (lambda text: text.replace('"numpy": "', '"numpy": "9'), ValueError, "checksum"),
        (
            lambda text: text.replace("keras_repro.manifest", "keras_repro.trace"),
            ValueError,
            "expected a keras_repro.manifest",
        ),
        (lambda text: text.replace('"version": 1', '"version": 7'), ValueError, "version 7 is not supported"),
        (
            lambda text: json.dumps({"format": "keras_repro.manifest", "version": 1}),
            ValueError,
            "no manifest or checksum",
        ),
    ],
)
def test_damaged_manifest_files_give_a_clear_error(tmp_path, damage, error, message):
    path = tmp_path / "env.json"
    write_manifest(path)
    path.write_text(damage(path.read_text()))
    with pytest.raises(error, match=message):
        read_manifest(path)


def test_missing_manifest_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "nope.json")


def test_bad_arguments_name_the_value():
    with pytest.raises(TypeError, match=r"^Invalid manifest b: 'manifest.json' \(of type str\)\. Expected a dict"):
        kr.diff_manifests({}, "manifest.json")
    with pytest.raises(TypeError, match=r"^Invalid path: 123 \(of type int\)\. path must be a path"):
        write_manifest(123)
    with pytest.raises(TypeError, match=r"^Invalid path: None \(of type NoneType\)"):
        read_manifest(None)


def test_a_missing_op_determinism_query_is_an_error_not_a_guess(monkeypatch):
    from tensorflow.python.framework import config

    from keras_repro import _compat

    monkeypatch.delattr(config, "is_op_determinism_enabled")
    with pytest.raises(_compat.UnsupportedVersionError, match="is_op_determinism_enabled"):
        kr.manifest()
