"""REST requests wait for their batch on the event loop, not in a thread each (issue 12).

Against a started server on TF Serving's half_plus_two: batches fill from more concurrent
requests than there are REST threads, a request past its deadline gets TF Serving's 504 while
its batch still answers the others, and its in-flight slot comes back once the batch has run.
"""

from __future__ import annotations

import concurrent.futures
import time

import requests

from tests.serving_conftest_helpers import FIXTURES, serve_in_process, single_model_config

MODEL = "half_plus_two"
CONFIG = single_model_config(MODEL, FIXTURES / "saved_model_half_plus_two_cpu")
# A batch closes when 4 requests are in it, or after 10 s: far past any request's wait below.
FULL_AT_FOUR = "max_batch_size { value: 4 }\nbatch_timeout_micros { value: 10000000 }\nnum_batch_threads { value: 1 }\n"


def post(url: str, x: float, timeout: float = 30) -> requests.Response:
    return requests.post(f"{url}/v1/models/{MODEL}:predict", json={"instances": [x]}, timeout=timeout)


def test_a_batch_fills_from_more_requests_than_rest_threads():
    """One REST thread, four concurrent requests: all four join one batch, which closes full at
    once. A server that parks a thread per waiting request would hold the first one until the
    10 s timeout (and the client's 8 s timeout would fire)."""
    with serve_in_process(CONFIG, batching_parameters=FULL_AT_FOUR, rest_api_num_threads=1) as server:
        post(server.rest, 0.0, timeout=30)  # warm: the session's first run, alone in its batch after 10 s
        with concurrent.futures.ThreadPoolExecutor(4) as clients:
            started = time.monotonic()
            responses = list(clients.map(lambda x: post(server.rest, x, timeout=8), [1.0, 2.0, 3.0, 4.0]))
            waited = time.monotonic() - started
    assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
    assert [r.json() for r in responses] == [{"predictions": [x / 2 + 2]} for x in (1.0, 2.0, 3.0, 4.0)]
    assert waited < 8  # not the batch timeout: the batch closed full


def test_a_request_past_its_deadline_gets_504_and_its_batch_answers_the_rest():
    """rest_api_timeout_in_ms=1000: a lone request waits in a batch that would close after 10 s
    and gets TF Serving's 504, but stays in its batch and keeps its in-flight slot until the
    batch has run. Of four more requests, three fill that batch and are answered, the fourth
    finds the model's four slots taken (503); then all four slots are free again."""
    with serve_in_process(
        CONFIG,
        batching_parameters=FULL_AT_FOUR,
        rest_api_timeout_in_ms=1000,
        max_in_flight_requests_per_model=4,
    ) as server:
        lone = post(server.rest, 1.0)
        assert lone.status_code == 504, lone.text
        assert lone.json() == {"error": "Deadline Exceeded: request took longer than 1000 ms"}
        with concurrent.futures.ThreadPoolExecutor(4) as clients:
            first = list(clients.map(lambda x: post(server.rest, x), [1.0, 2.0, 3.0, 4.0]))
        assert sorted(r.status_code for r in first) == [200, 200, 200, 503], [r.text for r in first]
        refused = next(r for r in first if r.status_code == 503)
        assert "max_in_flight_requests_per_model" in refused.json()["error"]
        answered = sorted(r.json()["predictions"][0] for r in first if r.status_code == 200)
        assert len(answered) == 3 and set(answered) <= {2.5, 3.0, 3.5, 4.0}
        with concurrent.futures.ThreadPoolExecutor(4) as clients:
            second = list(clients.map(lambda x: post(server.rest, x), [1.0, 2.0, 3.0, 4.0]))
        assert [r.json() for r in second] == [{"predictions": [x / 2 + 2]} for x in (1.0, 2.0, 3.0, 4.0)]
