"""deepcolor's web page: the server with a tiny real deepcolor generator (PNG in, the colorize
function's exact pixels out; concurrent requests give the same bytes as one at a time), and the
page in a real browser (headless Chromium driven by selenium): upload a drawing, paint a stroke,
press Colour, find the result at the drawing's size; the stroke reached the server as the hint.
The browser test is skipped, saying why, where Chromium, its driver or selenium is missing."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minimal import data
from minimal.app import training, webapp
from minimal.demos import deepcolor as dc
from minimal.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

SKIP_BROWSER = ("no headless browser: the page's test needs Debian's chromium and "
                "chromium-driver (apt-get install chromium chromium-driver; .ci/run does) and "
                "selenium (pip install -e '.[test]')")


def tiny_colorizer():
    """An untrained rung-4 generator at 32 px (the plumbing, not the quality, is under test)
    and the callback the demo hands the server."""
    config = dc.Config(size=32, width=4, depth=2, rungs=(4,))
    generator, _ = dc.make_rung(4, config, np.random.default_rng(0))
    received = []

    def colour(line, hint):
        received.append(hint)
        return dc.colorize(generator, line, hint, config.size, 4)

    return generator, config, colour, received


@pytest.fixture
def server(web_server):
    """server(callback, examples) -> port of a running in-process server."""
    def start(colour, examples=()):
        return web_server(colour, examples, title="deepcolor: colour your line art")

    return start


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def cartoon_line(height: int, width: int) -> np.ndarray:
    picture = data.illustrations(1, seed=11, size=max(height, width))[0][:height, :width]
    return data.line_art(picture)


def post(port, **files) -> tuple[int, bytes]:
    import http.client

    boundary = "deepcolor-web-test"
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                    f"filename=\"{name}.png\"\r\n\r\n".encode() + content + b"\r\n"
                    for name, content in files.items()) + f"--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/api/colour", body,
                           {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_a_drawing_in_gives_colorizes_pixels_out_also_when_two_tabs_ask_at_once(server):
    generator, config, colour, _ = tiny_colorizer()
    port = server(colour)
    line = cartoon_line(45, 70)  # odd sizes: padded for the U-Net and cropped back
    hint = np.ones((20, 30, 3), np.float32)
    hint[5:15, 5:25] = [0.9, 0.2, 0.2]
    status, body = post(port, line=png(line), hint=png(hint))
    assert status == 200
    # the same pixels as calling colorize directly on the decoded PNGs
    line_rgb = np.repeat((np.round(line * 255) / 255)[..., None], 3, axis=2)
    hint_read = np.round(hint * 255) / 255
    expected = webapp.encode_png(dc.colorize(generator, line_rgb, hint_read, config.size, 4))
    assert body == expected
    with Image.open(io.BytesIO(body)) as image:
        assert image.size == (70, 45)

    other = png(cartoon_line(33, 52))
    alone = [post(port, line=png(line), hint=png(hint))[1], post(port, line=other)[1]]
    answers = [None, None]
    requests = [{"line": png(line), "hint": png(hint)}, {"line": other}]

    def ask(index):
        answers[index] = post(port, **requests[index])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [(200, alone[0]), (200, alone[1])]
    assert generator.training  # the evaluation-mode switch was undone after each request


# ===== in a real browser ===================================================================

def browser():
    """A headless Chromium driven by selenium, or a skip saying what is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip(SKIP_BROWSER)
    if not chromium or not driver_path:
        pytest.skip(SKIP_BROWSER)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1000,900"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver_path), options=options)


def test_the_page_in_chromium_paint_a_stroke_colour_and_get_the_drawings_size(server,
                                                                              tmp_path):
    _, _, colour, received = tiny_colorizer()
    example = ("a held-out cartoon", cartoon_line(48, 48))
    port = server(colour, [example])
    drawing = tmp_path / "my drawing.png"
    drawing.write_bytes(png(cartoon_line(70, 90)))
    driver = browser()
    try:
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        def status_says(text):
            WebDriverWait(driver, 15).until(
                lambda d: text in d.find_element(By.ID, "status").text)

        driver.get(f"http://127.0.0.1:{port}/")
        status_says("48 x 48 pixels")  # the page opens on the first example
        driver.find_element(By.ID, "upload").send_keys(str(drawing))
        status_says("90 x 70 pixels")
        canvas = driver.find_element(By.ID, "hint")
        driver.execute_script("document.getElementById('colour').value = '#d83a3a'")
        # a horizontal stroke through the middle of the drawing (offsets from its centre)
        ActionChains(driver).move_to_element_with_offset(canvas, -120, 0).click_and_hold() \
            .move_by_offset(120, 10).move_by_offset(120, -10).release().perform()
        driver.find_element(By.ID, "go").click()
        status_says("Coloured with your hints")
        size = driver.execute_script(
            "const r = document.getElementById('result'); "
            "return r.complete ? [r.naturalWidth, r.naturalHeight] : null")
        assert size == [90, 70]
        link = driver.find_element(By.ID, "download")
        assert link.is_displayed() and link.get_attribute("href").startswith("blob:")
        assert link.get_attribute("download") == "my drawing-coloured.png"

        # the stroke reached the server as the hint: red across the middle, white paper above
        hint = received[-1]
        assert hint.shape == (70, 90, 3)
        red = np.all(np.abs(hint - np.array([216, 58, 58]) / 255) < 0.02, axis=-1)
        assert red[30:40].any(axis=0)[20:70].all()  # along the stroke, a red pixel per column
        assert np.all(hint[:20] == 1.0)

        driver.find_element(By.ID, "nohint").click()
        status_says("Coloured with no hint")  # the reply, not "Colouring with no hint..."
        assert received[-1] is None  # "No hint" sends the line art alone: the all-white hint
        driver.find_element(By.ID, "clear").click()
        driver.find_element(By.ID, "go").click()
        WebDriverWait(driver, 15).until(lambda d: len(received) == 3)
        assert np.all(received[-1] == 1.0)  # cleared: nothing painted, white paper

        # a file the browser cannot read is refused on the page, and the drawing stays
        notes = tmp_path / "notes.png"
        notes.write_text("not a picture")
        driver.find_element(By.ID, "upload").send_keys(str(notes))
        status_says("not a picture this browser can read")
        assert "error" in driver.find_element(By.ID, "status").get_attribute("class")
        assert len(received) == 3
    finally:
        driver.quit()


# ===== python -m minimal.demos.deepcolor --serve ===========================================

def tiny_checkpoint(folder) -> str:
    config = dc.Config(size=32, width=4, depth=2, rungs=(4,), out_dir=str(folder))
    rng = np.random.default_rng(0)
    generator, _ = dc.make_rung(4, config, rng)
    return str(training.TrainingState("deepcolor", config, {"rung4": generator}, {}, rng).save())


# the command line of `python -m minimal.demos.deepcolor`, with SIGINT back to Python's handler
# first (a shell's background job passes it on ignored, and Python keeps ignoring it)
DEEPCOLOR = [sys.executable, "-c", ("import runpy, signal; "
                                    "signal.signal(signal.SIGINT, signal.default_int_handler); "
                                    "runpy.run_module('minimal.demos.deepcolor', "
                                    "run_name='__main__')")]


def test_serve_loads_the_checkpoint_answers_and_stops_on_ctrl_c(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path)
    process = subprocess.Popen(
        [*DEEPCOLOR, "--serve", "--port", "0", "--checkpoint", checkpoint], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    try:
        line = process.stdout.readline()
        assert line.startswith("serving on http://127.0.0.1:"), (line, process.stderr.read())
        port = int(line.split(":")[2].split("/")[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=30) as reply:
            info = json.load(reply)
        assert "rung 4" in info["about"] and "32 px" in info["about"]
        assert len(info["examples"]) == 5 and "photograph" in info["examples"][-1]["name"]
        status, body = post(port, line=png(cartoon_line(21, 34)))
        with Image.open(io.BytesIO(body)) as image:
            assert status == 200 and image.size == (34, 21)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and "stopped" in out and "Traceback" not in err


def test_serve_without_a_checkpoint_says_how_to_train_one_and_flags_are_checked(tmp_path):
    result = subprocess.run([sys.executable, "-m", "minimal.demos.deepcolor", "--serve",
                             "--out-dir", str(tmp_path)], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 1 and "train one first" in result.stderr
    assert "--quick" in result.stderr and "Traceback" not in result.stderr
    for bad, message in [({"port": 65536}, "--port"), ({"port": -1}, "--port"),
                         ({"host": " "}, "--host"),
                         ({"serve": True, "colorize": "a.png", "out": "b.png"}, "pick one")]:
        with pytest.raises(ConfigError, match=message):
            dc.Config(**bad)
    assert dc.Config().host == "127.0.0.1" and dc.Config(port=0).port == 0
