"""gRPC load for bench/serving_latency.py, the gRPC counterpart of `wrk`: run as its own process so
its CPU is not counted as the server's.

`--connections` channels (each its own TCP connection), each with one Predict call in flight at
a time, for `--seconds`; the request is a serialized PredictRequest read from a file and sent as
raw bytes, so this process imports neither TensorFlow nor the TF Serving protos. Prints one JSON
object: p50_ms, requests, requests_per_second, errors.

    python -m bench.grpc_load --port 8500 --request predict.bin --connections 32 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import grpc

PREDICT = "/tensorflow.serving.PredictionService/Predict"
WARMUP_CALLS = 3  # per connection, before the clock starts
CALL_TIMEOUT_S = 30.0


async def load(port: int, request: bytes, connections: int, seconds: float) -> dict[str, float]:
    # A local subchannel pool per channel: otherwise channels to one target share one TCP connection.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) for _ in range(connections)]
    calls = [channel.unary_unary(PREDICT) for channel in channels]  # bytes in, bytes out
    latencies: list[float] = []
    errors = 0
    try:
        for call in calls:
            for _ in range(WARMUP_CALLS):
                await call(request, timeout=CALL_TIMEOUT_S)
        end = time.perf_counter() + seconds

        async def client(call: grpc.aio.UnaryUnaryMultiCallable) -> None:
            nonlocal errors
            while time.perf_counter() < end:
                start = time.perf_counter()
                try:
                    await call(request, timeout=CALL_TIMEOUT_S)
                except grpc.aio.AioRpcError:
                    errors += 1
                latencies.append(time.perf_counter() - start)

        started = time.perf_counter()
        await asyncio.gather(*(client(call) for call in calls))
        wall = time.perf_counter() - started
    finally:
        for channel in channels:
            await channel.close()
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "requests": len(latencies),
        "requests_per_second": len(latencies) / wall,
        "errors": errors,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--request", required=True, help="file holding one serialized PredictRequest")
    p.add_argument("--connections", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    args = p.parse_args()
    with open(args.request, "rb") as f:
        request = f.read()
    print(json.dumps(asyncio.run(load(args.port, request, args.connections, args.seconds))))


if __name__ == "__main__":
    main()
