"""Copies verified local files to a URI (gs://, s3://, hdfs://) so that no partial file ever shows.

Each file is written under a staging name in the destination (``.<name>.tmp-<random>``, which no
reader's pattern matches: ExampleGen globs ``train-*`` / ``t10k-*``), then renamed to its final name.
On an object store the rename is a store-side copy then a delete: the final object appears whole or
not at all. TensorFlow's ``tf.io.gfile`` does the work, the layer ExampleGen reads these files through.
"""

from __future__ import annotations

import os
import secrets


def staging_name(name: str) -> str:
    """A name next to ``name`` that no reader takes for it."""
    return f".{name}.tmp-{secrets.token_hex(4)}"


def upload(local_dir: str | os.PathLike, names: list[str], dest: str) -> list[str]:
    """Copies ``local_dir/<name>`` to ``dest/<name>`` for each name; returns the URIs written.

    A failure removes the staging object of the file being copied; files already renamed stay (each
    is complete), and the others keep whatever complete version they had before. TensorFlow's
    errors (no such bucket, no permission) come out as ``OSError`` naming the destination.
    """
    import tensorflow as tf  # about 20 s: only for a remote destination

    dest = dest.rstrip("/")
    written = []
    try:
        tf.io.gfile.makedirs(dest)
        for name in names:
            final, staging = f"{dest}/{name}", f"{dest}/{staging_name(name)}"
            try:
                tf.io.gfile.copy(os.path.join(os.fspath(local_dir), name), staging, overwrite=True)
                tf.io.gfile.rename(staging, final, overwrite=True)
            except BaseException:
                if tf.io.gfile.exists(staging):
                    tf.io.gfile.remove(staging)
                raise
            written.append(final)
    except tf.errors.OpError as err:  # e.g. no such bucket, no permission: say where
        raise OSError(f"{dest}: upload failed after {len(written)} of {len(names)} files: {err.message}") from None
    return written
