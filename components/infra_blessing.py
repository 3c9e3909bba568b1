"""The facts an InfraBlessing artifact carries: written by components/infra_validator.py, read by reports.

A module of its own so that reading them imports neither TensorFlow nor TFX.
"""

BLESSED_PROPERTY = "blessed"  # TFX's own: 1 blessed, 0 not
SERVING_BINARY_PROPERTY = "serving_binary"  # tensorflow_model_server or mnist-tfx serve
LOAD_SECONDS_PROPERTY = "load_seconds"  # model server start to the model AVAILABLE
REASON_PROPERTY = "reason"  # why not blessed
REASON_FILENAME = "INFRA_NOT_BLESSED_REASON"  # the reason, also as a file next to INFRA_NOT_BLESSED
