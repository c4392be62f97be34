"""The /web page in headless Chromium against a real `tryon serve` process on loopback."""
from pathlib import Path

import pytest

from serve_process import FAST, serve_process
from tryon.runtime.examples import EXAMPLE_GARMENT, EXAMPLE_PERSON

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path("/tmp/tryon_web.png")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="/usr/bin/chromium is absent (apt-get install chromium)")


def test_web_page_dresses_an_uploaded_photo(tiny_models_dir, tmp_path):
    from playwright.sync_api import sync_playwright

    with serve_process(tiny_models_dir, tmp_path / "serve.log", *FAST) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page()
        elsewhere, errors = [], []
        page.on("request", lambda r: r.url.startswith((server.url, "data:", "blob:")) or elsewhere.append(r.url))
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.goto(server.url + "/web")
        page.wait_for_selector("#synthetic:not([hidden])")  # says plainly that results are noise
        page.set_input_files("#person", EXAMPLE_PERSON)
        page.check('input[name="garment"][value="garment_tshirt"]')
        result = submit_and_wait(page)
        assert result["size"] == [192, 256]
        assert "total" in result["stages"] and len(result["stages"]) > 3
        assert "confidence" in page.inner_text("#verdict")
        page.screenshot(path=str(SCREENSHOT), full_page=True)

        # The other way to give a garment: upload one.
        page.set_input_files("#cloth", EXAMPLE_GARMENT)
        assert page.locator('input[name="garment"]:checked').count() == 0
        page.evaluate("document.getElementById('result').hidden = true")
        assert submit_and_wait(page)["size"] == [192, 256]
        browser.close()
    assert not elsewhere, f"the page reached beyond the server: {elsewhere}"
    assert not errors, errors


def submit_and_wait(page) -> dict:
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    page.wait_for_function("document.getElementById('result-image').complete"
                           " && document.getElementById('result-image').naturalWidth > 0")
    return page.evaluate("""() => {
        const image = document.getElementById('result-image');
        const stages = [...document.querySelectorAll('#timings tbody tr td:first-child')].map(c => c.textContent);
        return {size: [image.naturalWidth, image.naturalHeight], stages};
    }""")
