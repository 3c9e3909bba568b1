"""TF Serving's MonitoringConfig (`--monitoring_config_file`), parsed as the text proto it is.

tensorflow-serving-api does not ship monitoring_config_pb2, so the two messages of
tensorflow_serving/config/monitoring_config.proto are declared here, field for field.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath
_PACKAGE = "tensorflow.serving"


def _declare():
    file = descriptor_pb2.FileDescriptorProto(
        name="mnist_tfx/tensorflow_serving/config/monitoring_config.proto", package=_PACKAGE, syntax="proto3"
    )
    prometheus = file.message_type.add(name="PrometheusConfig")
    prometheus.field.add(
        name="enable",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    prometheus.field.add(
        name="path",
        number=2,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    monitoring = file.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        type_name=f".{_PACKAGE}.PrometheusConfig",
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.MessageFactory(pool).GetPrototype(pool.FindMessageTypeByName(f"{_PACKAGE}.MonitoringConfig"))


MonitoringConfig = _declare()


def prometheus_path(text: str) -> str | None:
    """The path Prometheus metrics are exported at, or None when the config does not enable them."""
    config = MonitoringConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise ValueError(f"Error parsing text-format {_PACKAGE}.MonitoringConfig: {e}") from e
    if not config.prometheus_config.enable:
        return None
    path = config.prometheus_config.path or DEFAULT_PROMETHEUS_PATH
    if not path.startswith("/"):
        raise ValueError(f"prometheus_config.path must start with '/': {path!r}")
    return path
