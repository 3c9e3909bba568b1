"""Trainer ``run_fn``: Transform output → tf.data → CNN_Basic (custom loop or fit) → SavedModel."""

from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from components import dataset, export, features, training
from components.locations import join
from components.model import build_cnn_basic
from components.training_params import TrainingParams


def run_fn(fn_args: FnArgs) -> None:
    """TFX Trainer entry point; hyper-parameters arrive in ``fn_args.custom_config``."""
    hp = TrainingParams.from_custom_config(fn_args.custom_config)
    keras.utils.set_random_seed(hp.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    spec = tft_output.transformed_feature_spec()

    train_examples = dataset.load_transformed(fn_args.train_files, spec)
    eval_examples = dataset.load_transformed(fn_args.eval_files, spec)
    num_train, num_eval = dataset.count(train_examples), dataset.count(eval_examples)  # fills the caches
    print(f"Training on {num_train} images, evaluating on {num_eval}", flush=True)
    train_examples = train_examples.apply(tf.data.experimental.assert_cardinality(num_train))
    eval_examples = eval_examples.apply(tf.data.experimental.assert_cardinality(num_eval))

    batch_size, epochs = hp.batch_size, hp.epochs
    train_ds = dataset.batched(train_examples, batch_size, hp.shuffle_buffer, hp.seed)
    eval_ds = dataset.batched(eval_examples, batch_size)

    strategy = training.make_strategy(hp.distribution_strategy)
    with strategy.scope():
        model = build_cnn_basic()
        optimizer = training.make_optimizer(hp.learning_rate, epochs * -(-num_train // batch_size))
    model.summary(print_fn=lambda line, *_: print(line, flush=True))
    log_dir = fn_args.model_run_dir
    history = training.train(
        model,
        train_ds,
        eval_ds,
        epochs,
        optimizer,
        num_train,
        loop=hp.training_loop,
        log_dir=log_dir,
        strategy=strategy,
    )
    training.save_history(history, join(log_dir, features.HISTORY_FILE))
    export.export_serving_model(model, tft_output, fn_args.serving_model_dir)
