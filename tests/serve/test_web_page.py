"""The web page in a real browser (Debian chromium driven by Playwright): upload, see, ask, read."""

from __future__ import annotations

from serve_fixtures import TEST_LIMITS, live, tiny_ckpt, tiny_model  # noqa: F401  (pytest fixtures)

import shutil

import pytest
from serve_helpers import API_KEY

from clinlm_toys import heart_wav


def _chromium():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; it is in the 'test' extra)")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run does this)")
    return sync_playwright, exe


def test_upload_ask_and_follow_up_in_chromium(live, tmp_path):
    sync_playwright, exe = _chromium()
    wav = heart_wav(tmp_path / "patient_AV.wav", murmur=True, seed=3, seconds=2.0)
    shot = tmp_path / "serve_page.png"
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 1100})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(live.url + "/")
            page.wait_for_selector("#model-info:has-text('model: tiny')")
            page.get_by_label("API key (if the server needs one)").fill(API_KEY)
            page.get_by_label("Upload a sound or image file").set_input_files(str(wav))
            page.wait_for_selector("#media-name:has-text('patient_AV.wav')")
            page.get_by_label("Recording site").select_option("mitral area")
            page.get_by_label("Preset question").select_option("Is there a murmur?")
            assert page.get_by_label("Your question").input_value() == "Is there a murmur?"
            page.get_by_role("button", name="Ask").click()
            answer = page.locator("#conversation li.assistant .text").first
            try:
                page.wait_for_function("() => { const a = document.querySelector('#conversation li.assistant .text');"
                                       " return a && a.textContent && a.textContent !== '…'; }", timeout=20_000)
            except Exception:
                pytest.fail(f"no answer appeared; the page says: {page.locator('#error').inner_text()!r}")
            first = answer.inner_text()
            assert first.strip() and first != "(empty answer)", first
            assert page.locator("#error").inner_text() == ""
            # the waveform canvas was drawn (some non-background pixels)
            drawn = page.evaluate("() => { const c = document.getElementById('wave'); const d = c.getContext('2d')"
                                  ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
                                  " for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }")
            assert drawn > 100
            # a follow-up in the same conversation
            page.get_by_label("Your question").fill("Where is it loudest?")
            page.get_by_role("button", name="Ask").click()
            page.wait_for_function("() => [...document.querySelectorAll('#conversation li.assistant .text')]"
                                   ".filter(a => a.textContent !== '…').length === 2", timeout=20_000)
            assert page.locator("#conversation li.user").count() == 2
            assert "mitral area" in page.locator("#conversation li.user").first.inner_text()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    assert all(u.startswith(live.url) or u.startswith(("data:", "blob:")) for u in requests), "the page fetched something off this server"
