"""The FastAPI + uvicorn peer of bench/serving_latency.py: the plain wrapper a user would write
instead of running a model server, as the yardstick our server must beat.

One route, POST /v1/models/<name>:predict, taking TF Serving's row format {"instances": [...]}
(numeric tensors only), orjson in and out, calling the SavedModel's serving_default signature.
No TF Serving checks beyond that: it is the comparison point, not a server.

    python -m bench.fastapi_peer --model_name mnist --model_base_path DIR --port 8501 [--workers 2]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import orjson
from fastapi import FastAPI, Request, Response

MODEL_NAME_ENV, MODEL_PATH_ENV = "FASTAPI_PEER_MODEL_NAME", "FASTAPI_PEER_MODEL_BASE_PATH"


def create_app() -> FastAPI:
    """The app of one uvicorn worker (uvicorn's `--factory`): each worker loads its own model."""
    import tensorflow as tf

    from bench.serving_latency import latest_version

    name = os.environ[MODEL_NAME_ENV]
    signature = tf.saved_model.load(str(latest_version(Path(os.environ[MODEL_PATH_ENV])))).signatures["serving_default"]
    (input_name,) = signature.structured_input_signature[1]
    dtype = signature.structured_input_signature[1][input_name].dtype.as_numpy_dtype
    app = FastAPI()

    @app.post(f"/v1/models/{name}:predict")
    async def predict(request: Request) -> Response:
        # The signature runs on the event loop: one call at a time per worker, no thread hand-off.
        instances = np.asarray(orjson.loads(await request.body())["instances"], dtype=dtype)
        outputs = {k: v.numpy() for k, v in signature(**{input_name: tf.constant(instances)}).items()}
        if len(outputs) == 1:
            predictions = next(iter(outputs.values()))
        else:  # row format: one object per instance
            predictions = [{k: v[i] for k, v in outputs.items()} for i in range(len(instances))]
        return Response(
            orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY),
            media_type="application/json",
        )

    return app


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_name", required=True)
    p.add_argument("--model_base_path", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    os.environ[MODEL_NAME_ENV], os.environ[MODEL_PATH_ENV] = args.model_name, args.model_base_path
    uvicorn.run(
        "bench.fastapi_peer:create_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
