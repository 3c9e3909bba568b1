"""`serve` / `predict` entry points: flags, the real process lifecycle, import hygiene."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.predict import main as predict_main
from serving.batching import BatchingParameters, parse_batching_parameters
from serving.client import RestClient
from serving.limits import grpc_arguments
from serving.model_config import LoadRetries, ModelConfig
from serving.server import main as serve_main
from serving.server import parse_args
from tests.serving_conftest_helpers import FIXTURES, free_port

REPO = Path(__file__).resolve().parents[1]


def test_defaults_serve_the_pushed_mnist_model(tmp_path):
    options = parse_args([], str(tmp_path / "serving_model" / "mnist"), "mnist")
    assert options.models == [ModelConfig("mnist", str(tmp_path / "serving_model" / "mnist"))]
    assert (options.port, options.rest_api_port, options.rest_api_host) == (8500, 8501, "127.0.0.1")
    assert options.batching_parameters_text is None
    assert options.rest_api_timeout_in_ms == 30000


def test_a_uri_model_base_path_is_kept_as_given():
    options = parse_args(["--model_base_path=gs://bucket/serving_model/mnist"], "/unused", "mnist")
    assert options.models == [ModelConfig("mnist", "gs://bucket/serving_model/mnist")]  # not <cwd>/gs:/bucket/…


def test_tf_serving_flag_forms(tmp_path):
    params = tmp_path / "batching.txt"
    params.write_text("max_batch_size { value: 16 } batch_timeout_micros { value: 1000 }")
    config = tmp_path / "models.config"
    config.write_text(
        'model_config_list { config { name: "a" base_path: "/a" } '
        'config { name: "b" base_path: "/b" model_version_policy { all {} } } }'
    )
    options = parse_args(
        [
            "--port=9000",
            "--rest_api_port",
            "9001",
            "--rest_api_host=0.0.0.0",
            f"--model_config_file={config}",
            "--enable_batching=true",
            f"--batching_parameters_file={params}",
            "--file_system_poll_wait_seconds=5",
            "--rest_api_timeout_in_ms=100",
        ],
        "/unused",
    )
    assert [m.name for m in options.models] == ["a", "b"] and options.models[1].policy == "all"
    assert parse_batching_parameters(options.batching_parameters_text) == BatchingParameters(16, 1000)
    assert (options.port, options.rest_api_port, options.rest_api_host) == (9000, 9001, "0.0.0.0")
    assert options.file_system_poll_wait_seconds == 5 and options.rest_api_timeout_in_ms == 100
    assert parse_args(["--enable_batching"], "/m").batching_parameters_text == ""
    assert parse_args(["--enable_batching=false"], "/m").batching_parameters_text is None


def test_config_and_service_flags(tmp_path):
    monitoring = tmp_path / "monitoring.txt"
    monitoring.write_text('prometheus_config { enable: true path: "/metrics" }')
    options = parse_args(
        [
            "--model_config_file_poll_wait_seconds=2",
            "--allow_version_labels_for_unavailable_models",
            "--max_num_load_retries=1",
            "--load_retry_interval_micros=500",
            f"--monitoring_config_file={monitoring}",
            "--grpc_socket_path=/tmp/s.sock",
            "--grpc_channel_arguments=grpc.max_connection_age_ms=2000," "grpc.lb_policy_name=grpclb",
            "--grpc_max_threads=3",
            "--enable_grpc_healthcheck_service=true",
            "--rest_api_enable_cors_support",
            "--tensorflow_intra_op_parallelism=2",
            "--num_load_threads=4",
        ],
        "/m",
    )
    assert options.model_config_file_poll_wait_seconds == 2
    assert options.allow_version_labels_for_unavailable_models
    assert options.load_retries == LoadRetries(1, 500)
    assert options.prometheus_path == "/metrics"
    assert options.grpc_socket_path == "/tmp/s.sock"
    arguments = grpc_arguments(options.limits.grpc_channel_arguments)
    assert (arguments["grpc.max_connection_age_ms"], arguments["grpc.lb_policy_name"]) == (2000, "grpclb")
    assert options.grpc_max_threads == 3
    assert options.enable_grpc_healthcheck_service and options.rest_api_enable_cors_support
    assert (options.tensorflow_intra_op_parallelism, options.tensorflow_inter_op_parallelism) == (2, 0)
    assert parse_args(["--tensorflow_session_parallelism=3"], "/m").tensorflow_inter_op_parallelism == 3
    defaults = parse_args([], "/m")
    assert defaults.load_retries == LoadRetries(5, 60_000_000) and defaults.prometheus_path is None
    assert not defaults.allow_version_labels_for_unavailable_models
    assert defaults.model_config_file_poll_wait_seconds == 0


def test_bad_model_config_file_is_reported_in_tf_servings_words(tmp_path, capsys):
    assert serve_main([f"--model_config_file={FIXTURES / 'bad_model_config.txt'}"], "/m") == 2
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--batching_parameters_file=/nonexistent"],
        ["--grpc_channel_arguments=novalue"],
        ["--port=0"],
        ["--model_config_file=/dev/null/x"],
        [
            "--tensorflow_session_parallelism=1",
            "--tensorflow_intra_op_parallelism=1",
            "--tensorflow_inter_op_parallelism=1",
        ],
        ["--monitoring_config_file=/nonexistent"],
        ["--model_config_file=/nonexistent"],
        ["--enable_batching", "--batching_parameters_file=/dev/null/x"],
    ],
)
def test_bad_flags_exit_with_2(argv):
    assert serve_main(argv, "/m") == 2


def test_predict_needs_images_or_test_images():
    with pytest.raises(SystemExit) as caught:
        predict_main([], "/data")
    assert caught.value.code == 2


def test_predict_reports_unreadable_inputs(tmp_path, capsys):
    assert predict_main(["--test-images", "3", "--data-dir", str(tmp_path)], str(tmp_path)) == 2
    assert "t10k-images-idx3-ubyte.gz" in capsys.readouterr().err


def test_rest_client_predict_cli_and_serve_flags_import_no_tensorflow():
    """So `mnist-tfx predict` and `mnist-tfx serve --help` (flags in serving.options) answer at once."""
    code = (
        "import sys, serving.client, cli.main, cli.predict, cli.serve, serving.options; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tfx')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    help_text = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert help_text.returncode == 0 and "--rest_api_port" in help_text.stdout, help_text.stderr


@pytest.mark.slow
def test_serve_process_lifecycle():
    """The real entry point: prints its addresses, serves, imports no TFX, exits 0 on SIGTERM."""
    grpc_port, rest_port = free_port(), free_port()
    code = (
        "import sys; from serving.server import main; rc = main(sys.argv[1:], '/unused'); "
        "print('TFX imported:', any(m.split('.')[0] == 'tfx' for m in sys.modules)); sys.exit(rc)"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            "--model_name=half_plus_two",
            f"--model_base_path={FIXTURES / 'saved_model_half_plus_two_cpu'}",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    lines = []
    try:
        deadline = time.monotonic() + 180
        while not any("Exporting HTTP/REST API at:" in line for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            lines.append(proc.stdout.readline())
        assert f"Running gRPC ModelServer at 127.0.0.1:{grpc_port} ...\n" in lines
        assert f"Exporting HTTP/REST API at:127.0.0.1:{rest_port} ...\n" in lines
        client = RestClient(f"127.0.0.1:{rest_port}", "half_plus_two")
        assert client.predict(instances=[[1.0]]) == [[2.5]]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "TFX imported: False" in out


@pytest.mark.slow
def test_tensorflow_thread_flags_are_applied_before_models_load():
    code = (
        "import sys; import tensorflow as tf; from serving.options import parse_args; "
        "from serving.server import configure_tensorflow_threads; "
        "configure_tensorflow_threads(parse_args(sys.argv[1:], '/m')); "
        "print(tf.config.threading.get_intra_op_parallelism_threads(), "
        "tf.config.threading.get_inter_op_parallelism_threads())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "--tensorflow_intra_op_parallelism=3", "--tensorflow_inter_op_parallelism=2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["3", "2"]
