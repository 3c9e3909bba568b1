"""The sub-commands of `mnist-tfx` and their one-line descriptions (help text and parsers)."""

# Command -> what it does; its code is the module ``cli.<command>`` with ``main(argv) -> exit status``.
COMMANDS = {
    "data": "materialize and verify the MNIST IDX files; --show N draws a grid",
    "run": "run the TFX pipeline locally on Apache Beam",
    "serve": "serve pushed models over the TensorFlow Serving REST/gRPC API",
    "predict": "ask a running server (REST or gRPC) to classify images",
    "compile": "compile the pipeline for Kubeflow Pipelines / Vertex AI",
    "report": "write an HTML report of the latest run",
}
