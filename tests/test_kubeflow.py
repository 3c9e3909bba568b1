"""``mnist-tfx compile``: a Kubeflow Pipelines v2 / Vertex AI spec, compiled offline and checked.

The kfp and Vertex SDKs are imported inside the slow tests: importing them takes up to a minute.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format

from pipeline.configs import PipelineConfig
from tests.conftest import PIPELINE_NODES, CliRun, mnist_tfx

COMPONENTS = tuple(n for n in PIPELINE_NODES if n != "InfraValidator")  # TFX compiles no InfraValidator
IMAGE = "europe-docker.pkg.dev/my-project/ml/mnist-tfx:1.0"
ROOT = "gs://my-bucket/mnist-tfx/root"
COMPILE_ARGS = (
    "--target",
    "kubeflow",
    "--image",
    IMAGE,
    "--pipeline-root",
    ROOT,
    "--train-limit",
    "300",
    "--eval-limit",
    "100",
    "--epochs",
    "2",
    "--min-accuracy",
    "0.9",
    "--beam-arg=--direct_num_workers=3",
)


def _parameter(task: dict, name: str) -> str:
    return task["inputs"]["parameters"][name]["runtimeValue"]["constantValue"]["stringValue"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CliRun, dict]:
    home = tmp_path_factory.mktemp("kubeflow-home")
    out = home / "specs" / "mnist-tfx.json"  # the folder does not exist yet
    run = mnist_tfx("compile", "--out", str(out), *COMPILE_ARGS, home=home, timeout=600)
    assert run.returncode == 0, run.output[-5000:]
    return home, run, json.loads(out.read_text())


@pytest.mark.slow
def test_json_is_a_vertex_pipeline_job_naming_every_component(compiled: tuple[Path, CliRun, dict]) -> None:
    from kfp.pipeline_spec import pipeline_spec_pb2

    _, run, job = compiled
    assert "compiled mnist-tfx (9 components" in run.output
    json_format.ParseDict(job, pipeline_spec_pb2.PipelineJob())  # the schema Vertex submits
    spec = job["pipelineSpec"]
    assert job["displayName"] == spec["pipelineInfo"]["name"] == "mnist-tfx"
    assert job["runtimeConfig"]["gcsOutputDirectory"] == ROOT
    tasks = spec["root"]["dag"]["tasks"]
    for component in COMPONENTS:  # the Resolver compiles to one task per resolved input
        assert any(task == component or task.startswith(f"{component}-") for task in tasks), component
    assert tasks["Trainer"]["dependentTasks"] == ["SchemaGen", "Transform"]
    assert "InfraValidator" not in tasks and "Trainer" in tasks["Pusher"]["dependentTasks"]
    executors = spec["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values() if "container" in e}
    assert images == {IMAGE}
    class_paths = {e["container"]["args"][1] for e in executors.values() if "container" in e}
    assert {"components.example_gen.Executor", "components.pusher.Executor"} <= class_paths


@pytest.mark.slow
def test_vertex_sdk_builds_a_pipeline_job_from_the_json(compiled: tuple[Path, CliRun, dict]) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    home = compiled[0]
    job = aiplatform.PipelineJob(  # built offline; only .submit() would call Vertex
        display_name="mnist-tfx",
        template_path=str(home / "specs" / "mnist-tfx.json"),
        project="my-project",
        location="europe-west4",
        credentials=AnonymousCredentials(),
    )
    request = job._gca_resource  # the PipelineJob that .submit() would send
    assert request.runtime_config.gcs_output_directory == ROOT
    assert "Pusher" in request.pipeline_spec["root"]["dag"]["tasks"]


@pytest.mark.slow
def test_json_carries_the_config(compiled: tuple[Path, CliRun, dict]) -> None:
    home, _, job = compiled
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    example_gen = json.loads(_parameter(tasks["MnistExampleGen"], "custom_config"))
    assert example_gen["custom_config"]["value"]["limits"] == {"train": 300, "eval": 100}
    assert _parameter(tasks["MnistExampleGen"], "input_base") == str(home / "data")
    trainer = json.loads(_parameter(tasks["Trainer"], "custom_config"))
    assert trainer["epochs"] == 2 and trainer["batch_size"] == 32
    assert _parameter(tasks["Trainer"], "run_fn") == "components.trainer.run_fn"
    assert "0.9" in _parameter(tasks["Evaluator"], "eval_config")
    pusher = json.loads(_parameter(tasks["Pusher"], "push_destination"))
    assert pusher["filesystem"]["base_directory"] == str(PipelineConfig(home=home).serving_model_dir)
    executor_args = json.dumps(job["pipelineSpec"]["deploymentSpec"]["executors"]["StatisticsGen_executor"])
    assert "--direct_num_workers=3" in executor_args


@pytest.mark.slow
def test_yaml_is_the_pipeline_spec_kfp_client_uploads(tmp_path: Path) -> None:
    from kfp import components
    from kfp.pipeline_spec import pipeline_spec_pb2

    out = tmp_path / "mnist-tfx.yaml"
    run = mnist_tfx("compile", "--out", str(out), "--image", IMAGE, home=tmp_path, timeout=600)
    assert run.returncode == 0, run.output[-5000:]
    spec = yaml.safe_load(out.read_text())
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    assert components.load_component_from_file(str(out)).name == "mnist-tfx"  # what kfp.Client reads
    assert "Pusher" in spec["root"]["dag"]["tasks"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--target", "argo", "--out", "{tmp}/x.json"), "invalid choice: 'argo'"),
        (("--target", "kubeflow"), "the following arguments are required: --out"),
        (("--out", "{tmp}/x.txt"), "--out must end in one of .json, .yaml, .yml"),
        (("--out", "{tmp}"), "is a directory"),
        (("--out", "{tmp}/x.json", "--train-limit", "0"), "train_limit must be a positive number"),
        (("--out", "{tmp}/x.json", "--image", " "), "--image must not be empty"),
    ],
)
def test_bad_arguments_exit_2_with_an_error(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    run = mnist_tfx("compile", *(a.format(tmp=tmp_path) for a in args), home=tmp_path, timeout=120)
    assert run.returncode == 2, run.output
    assert "error: " in run.output and message in run.output, run.output
    assert not list(tmp_path.iterdir())  # nothing written


def _strings(value: object) -> list[str]:
    """Every string in a parsed JSON document, parameters' embedded JSON included (as text)."""
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return [value] if isinstance(value, str) else []


@pytest.mark.slow
def test_a_bucket_home_puts_uris_everywhere_and_no_local_path_in_the_spec(tmp_path: Path) -> None:
    out = tmp_path / "mnist-tfx.json"
    bucket = "gs://my-bucket/team/mnist-tfx"
    run = mnist_tfx(
        "compile",
        "--out",
        str(out),
        "--image",
        IMAGE,
        "--home",
        bucket,
        "--serving-root",
        "gs://serving-bucket/models",
        home=tmp_path,
        timeout=600,
    )
    assert run.returncode == 0, run.output[-5000:]
    job = json.loads(out.read_text())
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    assert _parameter(tasks["MnistExampleGen"], "input_base") == f"{bucket}/data"
    assert job["runtimeConfig"]["gcsOutputDirectory"] == f"{bucket}/pipelines/mnist-tfx"
    pusher = json.loads(_parameter(tasks["Pusher"], "push_destination"))
    assert pusher["filesystem"]["base_directory"] == "gs://serving-bucket/models/mnist"
    local = re.compile(r"""(^|[\s"'=(,])(/|~|file:)[\w.~-]""")  # an absolute or home-relative local path
    assert [s for s in _strings(job) if local.search(s) or str(tmp_path) in s] == []
