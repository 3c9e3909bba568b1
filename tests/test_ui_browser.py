"""The digit-drawing page at /ui, driven in headless Chromium against the real server.

Slow: needs the `pushed_mnist_model` fixture (one real pipeline run on a slice) and Debian's
`chromium` + `chromium-driver` (skipped with the reason when they are not installed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import requests

from components import mnist_data

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): "
        "apt-get install -y chromium chromium-driver",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402  (only once the browser is known to exist)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.actions import interaction  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.actions.pointer_input import PointerInput  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

TEST_IMAGE = 0  # the first official test image (a 7)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=900,720",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def open_page(browser, url: str) -> None:
    browser.get(url)
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return !!window.mnistUi"))


def wait_for_result(browser) -> str:
    WebDriverWait(browser, 60).until(
        lambda d: d.find_element(By.ID, "result").get_attribute("data-state") in ("done", "error")
    )
    return browser.find_element(By.ID, "result").get_attribute("data-state")


def server_prediction(mnist_server, payload: list) -> dict:
    response = requests.post(f"{mnist_server.rest}/v1/models/mnist:predict", json={"instances": [payload]}, timeout=30)
    response.raise_for_status()
    return response.json()["predictions"][0]


def check_shown_prediction(browser, mnist_server) -> list:
    """The page shows the digit and the ten probabilities the server returns for its payload."""
    assert wait_for_result(browser) == "done", browser.find_element(By.ID, "error").text
    payload = browser.execute_script("return window.mnistUi.lastPayload")
    assert np.asarray(payload).shape == (28, 28)
    expected = server_prediction(mnist_server, payload)
    assert browser.find_element(By.ID, "digit").text == str(expected["classes"])
    rows = browser.find_elements(By.CSS_SELECTOR, "#probabilities tr")
    assert len(rows) == 10
    shown = [float(row.find_element(By.CSS_SELECTOR, "td.p").text.rstrip(" %")) / 100 for row in rows]
    np.testing.assert_allclose(shown, expected["probabilities"], atol=0.0006)  # shown to 0.1 %
    return payload


def test_page_is_served_on_the_rest_port(mnist_server):
    for path in ("/ui", "/ui/"):
        response = requests.get(mnist_server.rest + path, timeout=10)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/html")
        assert "window.mnistUi" in response.text


def test_drawn_test_digit_is_classified(mnist_server, browser, data_dir, tmp_path):
    images, labels = mnist_data.load(data_dir, "t10k")
    image = images[TEST_IMAGE]
    open_page(browser, f"{mnist_server.rest}/ui")
    browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.mnistUi.drawImage(arguments[0]).then(done, (e) => done(String(e)));",
        image.tolist(),
    )
    payload = np.asarray(check_shown_prediction(browser, mnist_server))
    # Prepared as MNIST was (crop, fit 20×20, centre of mass): the upscaled test digit comes back as itself.
    np.testing.assert_array_equal(payload, image)
    screenshot = tmp_path / "ui_screenshot.png"
    assert browser.save_screenshot(str(screenshot))
    print(f"\nscreenshot of the drawing page (true label {labels[TEST_IMAGE]}): {screenshot}")


@pytest.mark.parametrize("kind", [interaction.POINTER_MOUSE, interaction.POINTER_TOUCH])
def test_pointer_stroke_is_classified(mnist_server, browser, kind):
    """A vertical stroke drawn with the mouse or a finger (real pointer events) becomes a "1"-like bar."""
    open_page(browser, f"{mnist_server.rest}/ui")
    pad = browser.find_element(By.ID, "pad")
    actions = ActionBuilder(browser, mouse=PointerInput(kind, kind))
    actions.pointer_action.move_to(pad, 0, -90).pointer_down()
    for y in range(-70, 91, 20):  # offsets from the pad's centre
        actions.pointer_action.move_to(pad, 0, y)
    actions.pointer_action.pointer_up()
    actions.perform()
    payload = np.asarray(check_shown_prediction(browser, mnist_server))
    ink_rows, ink_columns = np.nonzero(payload)
    assert ink_rows.max() - ink_rows.min() + 1 == 20  # scaled so that the longer side is 20 px
    assert ink_columns.max() - ink_columns.min() + 1 < 10


def test_server_errors_are_shown(mnist_server, browser):
    open_page(browser, f"{mnist_server.rest}/ui?model=nosuchmodel")
    browser.execute_async_script(
        "const done = arguments[arguments.length - 1]; window.mnistUi.drawImage(arguments[0]).then(done);",
        (np.eye(28, dtype=np.uint8) * 255).tolist(),
    )
    assert wait_for_result(browser) == "error"
    assert "nosuchmodel" in browser.find_element(By.ID, "error").text
    assert browser.find_element(By.ID, "digit").text == ""
