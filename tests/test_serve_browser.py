"""The /web page in headless Chromium against a real `tryon serve` process on loopback, on the
full-size models: the photo is parsed once, then each garment click is a round trip of well
under a second, measured in the page. /docs renders from the server alone."""
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from serve_process import FAST, serve_process
from tryon.examples import EXAMPLE_GARMENT, EXAMPLE_PERSON

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path("/tmp/tryon_web.png")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# One JPP-Net pass at 384 without the mirror: the parse takes seconds instead of a minute on 2 cores.
ONE_PASS = ("--scales", "1.0", "--no-mirror", "--threads", "2")
ROUND_TRIP_LIMIT_MS = 1000  # issue 11: each garment after the parse, in well under a second

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (apt-get install chromium)")]


def test_web_page_parses_once_then_dresses_each_garment_in_under_a_second(full_models, tmp_path):
    from playwright.sync_api import sync_playwright

    gallery = tmp_path / "gallery"
    gallery.mkdir()
    cv2.imwrite(str(gallery / "red.jpg"), np.full((256, 192, 3), (0, 0, 200), np.uint8))
    args = (*ONE_PASS, "--cache", str(tmp_path / "store"), "--gallery", str(gallery))
    with serve_process(full_models.models, tmp_path / "serve.log", *args, start_timeout=300) as server, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page()
        elsewhere, errors = [], []
        page.on("request", lambda r: r.url.startswith((server.url, "data:", "blob:")) or elsewhere.append(r.url))
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.goto(server.url + "/web")
        page.wait_for_selector("#synthetic:not([hidden])")  # says plainly that results are noise
        page.wait_for_function("() => document.getElementById('ttl').textContent === '24 h'")  # how long photos stay
        # Synthetic weights: the crop around the pose starts off, and the page says why (issue 21).
        page.wait_for_selector("#crop-note:not([hidden])")
        assert not page.is_checked('input[name="need_pre"]')

        page.set_input_files("#person", EXAMPLE_PERSON)
        page.wait_for_selector("#person-step.busy")  # the parsing state shows
        assert "Parsing" in page.inner_text("#status")
        page.wait_for_selector("#parsed:not([hidden])", timeout=180_000)
        page.wait_for_function("() => document.getElementById('labels').naturalWidth === 192")  # the labels PNG
        person_id = page.evaluate("() => personId")
        # The gallery dressed ahead fills the grid: the preview first, then the exact parse, marked.
        page.wait_for_selector("#dressed .tile[data-quality] img", timeout=180_000)
        page.wait_for_function("() => document.querySelectorAll('#dressed .tile[data-quality=\"full\"]').length === 2"
                               " && [...document.querySelectorAll('#dressed img')].every(i => i.naturalWidth === 192)"
                               " && document.getElementById('dressed').dataset.exactMs", timeout=180_000)
        assert page.inner_text("#dressed .tile[data-garment='red'] .mark.full") == "exact"
        figures = page.evaluate("() => ({...document.getElementById('dressed').dataset})")
        print(f"\nin the page, from the upload: first try-on shown {figures['firstLookMs']} ms, "
              f"first exact one {figures.get('exactMs')} ms")
        assert float(figures["firstLookMs"]) <= float(figures["exactMs"])
        picked = dress(page, lambda: page.click("#dressed .tile[data-garment='red']"))  # a tile is a click
        assert "kept" in picked["stages"] and picked["size"] == [192, 256]  # answered from the store

        first = dress(page, lambda: page.check('input[name="garment"][value="garment_tshirt"]'))
        second = dress(page, lambda: page.check('input[name="garment"][value="red"]'))
        assert first["size"] == second["size"] == [192, 256]
        assert second["image"] != first["image"]
        assert "kept" in second["stages"] and not any(s.startswith("parse.") for s in second["stages"])  # dressed ahead
        # Two more switches, so that one scheduling hiccup on a shared machine is not the figure.
        again = [dress(page, lambda: page.check(f'input[name="garment"][value="{garment}"]'))["ms"]
                 for garment in ("garment_tshirt", "red")]
        round_trips = sorted([second["ms"], *again])
        print(f"\ngarment round trips in the page after the parse: {', '.join(f'{ms:.0f}' for ms in round_trips)} ms "
              f"(first garment {first['ms']:.0f} ms); server stages of the second {second['server_ms']}")
        assert round_trips[1] < ROUND_TRIP_LIMIT_MS, f"the median garment round trip took {round_trips[1]:.0f} ms"
        page.screenshot(path=str(SCREENSHOT), full_page=True)

        uploaded = dress(page, lambda: page.set_input_files("#cloth", EXAMPLE_GARMENT))  # the other way in
        assert uploaded["size"] == [192, 256] and page.locator('input[name="garment"]:checked').count() == 0

        page.click("#delete")
        page.wait_for_function("() => document.getElementById('status').textContent.startsWith('Deleted')")
        assert page.is_hidden("#parsed") and page.is_disabled("#submit")
        with pytest.raises(urllib.error.HTTPError) as gone:
            urllib.request.urlopen(f"{server.url}/v1/persons/{person_id}", timeout=30)
        assert gone.value.code == 404

        assert not page.evaluate("() => document.getElementById('key-dialog').open")  # no keys here: never asked

        page.goto(server.url + "/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=60_000)
        assert "tryon-onnx" in page.inner_text(".swagger-ui .info .title")
        assert page.locator(".opblock-summary-path", has_text="/v1/persons/{person_id}/tryon").count() == 1
        browser.close()
    assert not elsewhere, f"the page reached beyond the server: {elsewhere}"
    assert not errors, errors


def test_with_api_keys_the_page_asks_once_refuses_a_wrong_key_and_keeps_the_right_one_for_the_tab(
        tiny_models_dir, tmp_path):
    from playwright.sync_api import sync_playwright

    key = "page-key-0123456789"
    args = (*FAST, "--cache", str(tmp_path / "store"), "--api-key", f"page:{key}")
    with serve_process(tiny_models_dir, tmp_path / "serve.log", *args) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page()
        errors = []
        page.on("console", lambda m: m.type == "error" and "401" not in m.text and errors.append(m.text))
        page.goto(server.url + "/web")
        page.wait_for_selector("#key-dialog[open]")  # the gallery's call was refused: the page asks
        assert page.is_hidden("#key-refused") and page.get_attribute("#key", "type") == "password"
        page.fill("#key", key[:-1])
        page.press("#key", "Enter")
        page.wait_for_selector("#key-dialog[open] #key-refused:not([hidden])")  # refused, said, asked again
        assert page.input_value("#key") == ""
        page.fill("#key", key)
        page.click("#key-dialog button")
        page.wait_for_selector("#key-dialog", state="hidden")
        gallery_ready = "() => [...document.querySelectorAll('#gallery img')].some(i => i.naturalWidth > 0)"
        page.wait_for_function(gallery_ready)  # the gallery's PNGs came with the key
        assert page.evaluate("() => sessionStorage.getItem('tryon-api-key')") == key

        page.set_input_files("#person", EXAMPLE_PERSON)
        page.wait_for_function("() => document.getElementById('dressed').dataset.firstLookMs", timeout=120_000)
        tile = page.locator("#dressed .tile[data-quality] img").first
        assert tile.evaluate("i => i.naturalWidth") == 192 and tile.get_attribute("src").startswith("blob:")
        assert page.evaluate("() => document.getElementById('labels').naturalWidth") == 192

        page.reload()  # the same tab: the key is still there, nothing asks
        page.wait_for_function(gallery_ready)
        assert not page.evaluate("() => document.getElementById('key-dialog').open")
        browser.close()
    assert not errors, errors


def dress(page, choose) -> dict:
    """Choose a garment (the page sends the try-on at once) and wait for its result."""
    page.evaluate("() => { document.getElementById('roundtrip').dataset.ms = ''; }")
    choose()
    page.wait_for_function("() => document.getElementById('roundtrip').dataset.ms !== ''", timeout=60_000)
    page.wait_for_function("() => document.getElementById('result-image').complete"
                           " && document.getElementById('result-image').naturalWidth > 0")
    result = page.evaluate("""() => {
        const image = document.getElementById('result-image');
        const cells = [...document.querySelectorAll('#timings tbody tr')].map(r => [...r.cells].map(c => c.textContent));
        return {size: [image.naturalWidth, image.naturalHeight], image: image.src.length + ':' + image.src.slice(-64),
                ms: Number(document.getElementById('roundtrip').dataset.ms), stages: cells.map(c => c[0]),
                server_ms: Object.fromEntries(cells)};
    }""")
    return result
