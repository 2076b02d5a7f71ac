"""The web page of ``charrnn serve`` in a real headless browser (Chromium through
Selenium): type a prime, press Generate, read the text as it streams in; and a
classifier's prediction in the box for other tasks.

Needs Chromium and its driver (Debian: ``apt-get install chromium chromium-driver``) and
``pip install selenium``; skipped cleanly without them. The screenshot of each run is
saved in the test's temporary directory (pytest prints where with ``-rs``/``-v``)."""

from __future__ import annotations

import shutil

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
pytest.importorskip("uvicorn")

import charrnn  # noqa: E402
from test_cli_classify import ok  # noqa: E402
from test_serve import HW, train_tiny_lm  # noqa: E402
from test_serve_client import serving  # noqa: E402

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (BROWSER and DRIVER), reason="needs Chromium and chromedriver "
                                "(Debian: apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The page of a server with a tiny language model and a tiny classifier, in headless Chromium."""
    from selenium.webdriver.chrome.service import Service

    base = tmp_path_factory.mktemp("serve_browser")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        mp.setenv("XDG_CACHE_HOME", str(base / "cache"))
        lm_run = train_tiny_lm(base)
        data = base / "reviews.txt"
        data.write_text("".join(f"__label__{'pos' if i % 2 else 'neg'} {'a good film' if i % 2 else 'a bad mess'}\n"
                                for i in range(30)), encoding="utf-8")
        ok("train", "--task", "classify", data, "--tokenizer", "char", "--hidden-size", "8", "--embedding-dim", "6",
           "--batch-size", "4", "--max-steps", "5", *HW, "-o", base / "reviews")
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,760"):
        options.add_argument(arg)
    with serving(f"tiny={lm_run}", base / "reviews", cwd=base, env_extra={"XDG_CACHE_HOME": str(base / "cache")}) as url:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
        try:
            driver.get(url + "/")
            yield driver, charrnn.load(lm_run, device="cpu"), base
        finally:
            driver.quit()


def _wait(driver, condition, timeout=30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition(d))


def _text(driver, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById('{element_id}').textContent")


def test_the_page_streams_the_generated_text(page, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver, lm, _ = page
    _wait(driver, lambda d: len(Select(d.find_element(By.ID, "model")).options) == 2)
    Select(driver.find_element(By.ID, "model")).select_by_value("tiny")
    for element_id, value in (("prime", "the cat"), ("length", "400"), ("seed", "5")):
        box = driver.find_element(By.ID, element_id)
        box.clear()
        box.send_keys(value)
    driver.execute_script("const t = document.getElementById('temperature'); t.value = '0.9';"
                          "t.dispatchEvent(new Event('input'));")
    assert _text(driver, "temperature-value") == "0.90"
    # Count the updates of the output as they happen: streamed text arrives in many pieces.
    driver.execute_script("window.updates = 0; new MutationObserver(() => window.updates++).observe("
                          "document.getElementById('output-text'), {childList: true, characterData: true,"
                          " subtree: true});")
    driver.find_element(By.ID, "generate").click()
    _wait(driver, lambda d: "tokens in" in _text(d, "status") or "error" in d.find_element(By.ID, "status")
          .get_attribute("class"))
    status = _text(driver, "status")
    assert status.startswith("400 tokens in") and status.endswith("finished: length"), status
    assert _text(driver, "output-prime") == "the cat"
    assert _text(driver, "output-text") == lm.generate("the cat", length=400, seed=5, temperature=0.9)
    assert driver.execute_script("return window.updates") > 20
    assert driver.find_element(By.ID, "generate").is_enabled() and not driver.find_element(By.ID, "stop").is_enabled()
    shot = tmp_path / "page.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_the_page_shows_a_classifiers_predictions(page, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver, _, base = page
    Select(driver.find_element(By.ID, "model")).select_by_value("reviews")
    assert not driver.find_element(By.ID, "predict-panel").get_attribute("hidden")
    assert driver.find_element(By.ID, "generate-panel").get_attribute("hidden")
    box = driver.find_element(By.ID, "predict-input")
    box.clear()
    box.send_keys("a good film\na bad mess")
    driver.find_element(By.ID, "predict").click()
    _wait(driver, lambda d: "prediction" in _text(d, "status"))
    rows = driver.find_elements(By.CSS_SELECTOR, "#predictions tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows] == ["a good film", "a bad mess"]
    model = charrnn.load(base / "reviews", device="cpu")
    assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows] == [
        best[0][0] for best in model.predict(["a good film", "a bad mess"])]
    driver.save_screenshot(str(tmp_path / "predict.png"))
