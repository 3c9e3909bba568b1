"""``mnist-tfx serve``: the TensorFlow Serving-compatible server on this project's pushed models.

The server itself (``serving/``) is generic; this entry point supplies the MNIST defaults (model
name, the home's serving folder) and plugs in the digit-drawing page at ``/ui``.
"""

from __future__ import annotations

from components import features
from pipeline.configs import PipelineConfig
from serving import options  # no TensorFlow: --help and flag errors answer at once


def rest_plug_ins() -> tuple:
    """The REST routes this project adds to the generic server (tests serve with the same ones)."""
    from serving import ui

    return (ui.add_ui_routes,)


def main(argv: list[str]) -> int:
    default_base_path = str(PipelineConfig().serving_model_dir)
    if options.build_parser(default_base_path, features.MODEL_NAME).parse_args(argv).version:
        print(options.version_text())  # without importing TensorFlow, as --help
        return 0
    from serving import server

    return server.main(argv, default_base_path, features.MODEL_NAME, extra_routes=rest_plug_ins())
