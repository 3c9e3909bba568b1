"""Feature keys, shapes, signature, model and file names, training choices: defined once for the whole code base."""

IMAGE_KEY = "image"
LABEL_KEY = "label"

IMAGE_HEIGHT = 28
IMAGE_WIDTH = 28
NUM_PIXELS = IMAGE_HEIGHT * IMAGE_WIDTH
NUM_CLASSES = 10
# One raw image: uint8 pixels as in the IDX files and the serving signature's input.
PIXELS_SHAPE = (IMAGE_HEIGHT, IMAGE_WIDTH)
PIXELS_DTYPE = "float32"  # serving_default's input dtype (the values are 0-255)
# One transformed image as the model sees it: scaled to [0, 1], one channel.
MODEL_INPUT_SHAPE = (IMAGE_HEIGHT, IMAGE_WIDTH, 1)

# Splits produced by the MNIST ExampleGen.
TRAIN_SPLIT = "train"  # the 60,000 official training images
EVAL_SPLIT = "eval"  # the 10,000 official test images

# Signatures of the pushed SavedModel and their input/output names.
SIGNATURE_PIXELS = "serving_default"  # {"images": float32 [None, 28, 28], 0..255}
SIGNATURE_IMAGE_BYTES = "predict_image_bytes"  # {"image_bytes": string [None], PNG/JPEG}
SIGNATURE_EXAMPLES = "predict_examples"  # {"examples": string [None], serialized tf.Example}
SIGNATURE_CLASSIFY = "classify"  # tensorflow/serving/classify on serialized tf.Example
INPUT_IMAGES = "images"
INPUT_IMAGE_BYTES = "image_bytes"
INPUT_EXAMPLES = "examples"
OUTPUT_PROBABILITIES = "probabilities"
OUTPUT_CLASSES = "classes"

# The name TF Serving serves the pushed model under (and the folder the Pusher writes to).
MODEL_NAME = "mnist"
# Per-epoch metrics the Trainer writes beside its TensorBoard logs (the report reads them).
HISTORY_FILE = "history.json"

# Training choices (PipelineConfig, the CLI and run_fn all read these).
TRAINING_LOOPS = ("custom", "fit")  # GradientTape loop, or Keras compile/fit
DISTRIBUTION_STRATEGIES = ("default", "mirrored", "multi_worker_mirrored")
