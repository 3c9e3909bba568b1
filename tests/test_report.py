"""`mnist-tfx report` after a real slice run: the page holds the MLMD facts and real pictures."""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import pytest
from PIL import Image

from cli import report as report_cli
from pipeline import configs
from reports import plots as report_plots
from reports import report, run_record, run_summary
from tests.conftest import mnist_tfx

FIGURE = re.compile(
    r'<figure id="(\w+)">\s*<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" ' r'width="(\d+)" height="(\d+)"'
)
URI = re.compile(r'<code class="uri">([^<]*)</code>')


@pytest.fixture(scope="module")
def written(slice_home) -> tuple[Path, Path, str]:
    """(home, report.html, its text) after `mnist-tfx report --home HOME`."""
    home, _ = slice_home
    run = mnist_tfx("report", "--home", str(home), home=home)
    assert run.returncode == 0, run.output[-5000:]
    page = Path(run.output.strip().splitlines()[-1])
    return home, page, page.read_text(encoding="utf-8")


@pytest.mark.slow
def test_report_path_layout(written):
    home, page, _ = written
    config = configs.PipelineConfig(home=home)
    [run] = run_record.connect(config.metadata_path).get_contexts_by_type("pipeline_run")
    assert page == home / "reports" / run.name / report.REPORT_FILE
    names = {"training_curves", "confusion_matrix", "per_digit_accuracy", "misclassified", "data_grid"}
    assert {p.name for p in page.parent.iterdir()} == {report.REPORT_FILE} | {f"{n}.png" for n in names}


@pytest.mark.slow
def test_report_holds_the_mlmd_facts(written):
    home, _, text = written
    summary = run_summary.summarize(configs.PipelineConfig(home=home))
    assert len(summary.nodes) >= 8 and not summary.failed()
    for node in summary.nodes:
        name = html.escape(node.node_id)
        row = f'<tr data-node="{name}"><td>{name}</td><td class="{node.state}">{node.state}</td>'
        assert row in text, node
    assert summary.blessed and '<td id="blessing" class="blessed">BLESSED</td>' in text
    assert summary.infra.blessed and f'class="blessed">{html.escape(summary.infra.describe())}</td>' in text
    assert f'<td id="pushed-version">{summary.pushed_version}</td>' in text
    assert f"<code>{html.escape(summary.pushed_path)}</code>" in text
    assert f"{summary.test_accuracy:.4f}" in text


@pytest.mark.slow
def test_report_holds_the_lineage_of_the_pushed_model(written):
    home, _, text = written
    config = configs.PipelineConfig(home=home)
    store = run_record.connect(config.metadata_path)
    nodes = {n.node_id: n for n in run_record.latest_run(store, config.pipeline_name)}
    [model] = [a for a in run_record.output_artifacts(store, nodes["Trainer"].execution_id) if a.type == "Model"]
    lineage = text[text.index("<h2>Lineage") : text.index("<h2>Pictures")]
    uris = [html.unescape(u) for u in URI.findall(lineage)]
    assert uris[0] == model.uri
    for kind in ("transformed_examples", "transform_graph", "schema", "MnistExampleGen/examples"):
        assert any(kind in uri for uri in uris), kind
    for uri in uris:
        assert Path(uri).exists(), uri
    for node in ("Trainer", "Transform", "SchemaGen", "StatisticsGen", "MnistExampleGen"):
        assert f'<td class="num">{nodes[node].execution_id}</td><td>{node}</td>' in lineage, node
    assert '<span id="spans">without spans (the four IDX files)</span>' in lineage  # ExampleGen's span 0


@pytest.mark.slow
def test_report_pictures_decode_to_the_expected_size(written):
    _, page, text = written
    figures = {name: (b64, (int(w), int(h))) for name, b64, w, h in FIGURE.findall(text)}
    wrong = int(re.search(r"of the (\d+) images that the pushed model", text).group(1))
    expected = {
        "training_curves": report_plots.CURVES_SIZE,
        "confusion_matrix": report_plots.CONFUSION_SIZE,
        "per_digit_accuracy": report_plots.PER_DIGIT_SIZE,
        "misclassified": report_plots.gallery_size(min(wrong, report.GALLERY_MAX)),
        "data_grid": (1000, 250),  # 20 images, 10 a row, 100×125 px each
    }
    assert figures.keys() == expected.keys()
    for name, (b64, declared) in figures.items():
        png = base64.b64decode(b64)
        image = Image.open(io.BytesIO(png))
        assert image.size == declared == expected[name], name
        low, high = image.convert("L").getextrema()
        assert low < high, f"{name} is blank"
        assert (page.parent / f"{name}.png").read_bytes() == png
    assert not re.search(r'(src|href)="(?!data:)', text), "the page must be self-contained"


def test_report_without_a_run(tmp_path, capsys):
    assert report_cli.main(["--home", str(tmp_path)]) == 2
    metadata = configs.PipelineConfig(home=tmp_path).metadata_path
    assert capsys.readouterr().err == f"error: no pipeline run recorded in {metadata}\n"
