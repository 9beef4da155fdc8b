"""The Gradio app in a real browser: Playwright drives Debian's Chromium against `trainer ui` on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import ARTIFACTS, run_cli, serve_ui, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs_root(shared_tiny_llama, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ui-runs")
    result = run_cli("--profile", "cpu", "--model", str(shared_tiny_llama), "--dataset", "sample", "--max-steps",
                     "3", "--set", "eval_size=0", "--run-dir", str(root / "tiny-run"))
    assert result.returncode == 0, result.stdout
    return root


def test_chat_compare_and_runs_in_a_browser(browser, runs_root, shared_tiny_llama):
    ARTIFACTS.mkdir(exist_ok=True)
    server, url = serve_ui(str(runs_root / "tiny-run"), str(runs_root / "missing-model"), "--runs-root", str(runs_root))
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        # what the page asks the browser to speak, recorded instead of spoken
        page.add_init_script("window.spoken = []; window.speechSynthesis.speak = (u) => window.spoken.push(u.text);")
        page.goto(url)
        page.wait_for_selector("#model-status >> text=LoRA adapter on", timeout=120_000)

        page.check("#read-aloud input")
        page.fill("#message textarea", "Hello, who are you?")
        page.press("#message textarea", "Enter")
        page.wait_for_selector('#chatbot [data-testid="user"] >> text=Hello, who are you?')
        bot = page.locator('#chatbot [data-testid="bot"]')
        wait_until(page, lambda: bot.count() == 1 and bot.inner_text().strip() != "")
        # the browser speaks once the reply is whole: a pause between streamed tokens is not its end
        wait_until(page, lambda: page.evaluate("window.spoken.length") == 1, 90)
        wait_until(page, lambda: not page.locator("#chatbot .generating, #chatbot .pending").count(), 30)
        reply = bot.inner_text()
        assert reply.strip()
        assert page.evaluate("window.spoken[0]").split()[:3] == reply.split()[:3]  # the whole reply, once
        assert page.evaluate("window.spoken.length") == 1
        page.screenshot(path=str(ARTIFACTS / "ui-chat.png"), full_page=True)

        def generating():
            return page.locator("#chatbot .generating, #chatbot .pending").count() > 0

        # Regenerate answers the last message again: still one user turn and one reply
        page.click("#regenerate")
        wait_until(page, lambda: not generating() and bot.count() == 1 and bot.inner_text().strip() != "", 180)
        assert page.locator('#chatbot [data-testid="user"]').count() == 1

        # Stop ends a long reply where it is: what was said stays, nothing more comes
        page.get_by_text("Generation settings").click()
        page.fill("#max-new-tokens input[type=number]", "2048")
        page.press("#max-new-tokens input[type=number]", "Tab")
        page.fill("#message textarea", "Tell me a very long story.")
        page.press("#message textarea", "Enter")
        last = page.locator('#chatbot [data-testid="bot"]').last
        wait_until(page, lambda: page.locator('#chatbot [data-testid="bot"]').count() == 2
                   and len(last.inner_text()) > 200, 120)
        before = last.inner_text()
        wait_until(page, lambda: last.inner_text() != before, 30)  # the reply grows: there is something to stop
        page.click("#chat-stop")
        wait_until(page, lambda: not generating(), 30)
        stopped = last.inner_text()  # nothing more comes: checked when the page is back on the Chat tab

        page.get_by_role("tab", name="Compare").click()
        page.click("#compare")  # no prompt: refused with a message
        page.wait_for_selector("text=Type a prompt to compare the two answers.", timeout=30_000)
        # the base model against the run, both streaming at once
        assert page.input_value("#compare-left input") == "base model (of the other side)"
        assert page.input_value("#compare-right input") == str(runs_root / "tiny-run")
        page.fill("#compare-prompt textarea", "What is 2 + 2?")
        page.click("#compare")
        answers = ("#left-answer textarea", "#right-answer textarea")
        wait_until(page, lambda: all(page.input_value(box).strip() for box in answers))
        left_then = page.input_value(answers[0])
        wait_until(page, lambda: page.locator("#left-answer .generating, #right-answer .generating").count() == 0)
        left, right = (page.input_value(box) for box in answers)
        # one after the other, the left answer would be whole before the right one starts
        assert left.startswith(left_then) and len(left) > len(left_then), (left_then, left)
        assert left != right  # the base and the adapter answer differently
        # a checkpoint of the run can be picked, as RUN/checkpoint-N
        page.locator("#compare-right input").click()
        page.get_by_role("option", name="tiny-run/checkpoint-3").wait_for(timeout=10_000)
        page.keyboard.press("Escape")
        page.screenshot(path=str(ARTIFACTS / "ui-compare.png"), full_page=True)

        page.get_by_role("tab", name="Runs").click()
        wait_until(page, lambda: "tiny-run" in page.inner_text("#runs"), 30)
        runs = page.inner_text("#runs")
        assert "completed" in runs and "3/3" in runs and "Eval loss" in runs and "Tokens/s" in runs, runs
        assert "yes" in runs and "true" not in runs.lower().split()
        page.locator("#loss-chart .js-plotly-plot .scatterlayer .trace").first.wait_for(timeout=30_000)  # drawn
        page.screenshot(path=str(ARTIFACTS / "ui-runs.png"), full_page=True)

        # A run that finishes while the page is open shows in the table and the model picker, without a reload
        later = run_cli("--profile", "cpu", "--model", str(shared_tiny_llama), "--dataset", "sample", "--max-steps",
                        "2", "--set", "eval_size=0", "--run-dir", str(runs_root / "later-run"))
        assert later.returncode == 0, later.stdout
        wait_until(page, lambda: "later-run" in page.inner_text("#runs"), 30)
        page.get_by_role("tab", name="Chat").click()
        page.locator("#model-picker input").click()
        page.get_by_role("option", name="later-run", exact=True).wait_for(timeout=10_000)
        page.keyboard.press("Escape")

        # A broken model shows an error in the page; the app keeps working.
        page.get_by_role("tab", name="Chat").click()
        assert last.inner_text() == stopped and not generating()  # the reply stopped stayed as it was
        page.locator("#model-picker input").click()
        page.get_by_role("option", name=str(runs_root / "missing-model")).click()
        page.wait_for_selector("#model-status >> text=Error:", timeout=60_000)
        assert "neither an existing folder nor a Hub id" in page.inner_text("#model-status")
        # a message to it: the same message as a notice (no exception), and what was typed stays in its box
        page.fill("#message textarea", "Are you there?")
        page.press("#message textarea", "Enter")
        page.wait_for_selector(".toast-body >> text=neither an existing folder nor a Hub id", timeout=60_000)
        wait_until(page, lambda: not generating(), 30)  # the answer to it has ended: the box is as it leaves it
        assert page.input_value("#message textarea") == "Are you there?"
        page.screenshot(path=str(ARTIFACTS / "ui-error.png"), full_page=True)
        follows_the_current_run(browser, url)  # a second page, once this one's chat is checked
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "Running on local URL:  http://127.0.0.1:" in output  # bound to this machine only by default
    assert "share=True" not in output and "--share" in output, output
    assert "Traceback" not in output, output  # a bad model path is the user's to fix, not a crash


def follows_the_current_run(browser, url: str) -> None:
    """A page opened now is on the newest run in every tab; a run picked in the Train tab is followed by the others."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    pickers = {"#train-run": "Train", "#export-run": "Export", "#model-picker": "Chat", "#compare-right": "Compare"}

    seen: list[dict[str, str]] = []

    def on(run: str) -> bool:
        seen.append({})
        for picker, tab in pickers.items():
            if tab:  # a tab's parts are in the page once it is opened
                page.get_by_role("tab", name=tab).click()
            seen[-1][picker] = Path(page.locator(f"{picker} input").input_value()).name  # by id or folder
        return set(seen[-1].values()) == {run}

    try:
        wait_until(page, lambda: on("later-run"), 30)
    except AssertionError:
        raise AssertionError(seen[-1]) from None
    assert page.input_value("#compare-left input") == "base model (of the other side)"
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-run input").click()
    page.get_by_role("option", name="tiny-run", exact=True).click()
    try:
        wait_until(page, lambda: on("tiny-run"), 30)
    except AssertionError:
        raise AssertionError(seen[-1]) from None
    page.get_by_role("tab", name="Train").click()
    wait_until(page, lambda: "tiny-run: completed, step 3/3" in page.inner_text("#train-status"), 30)
    page.close()


def test_basic_auth_guards_the_app(browser, runs_root):
    server, url = serve_ui(str(runs_root / "tiny-run"), "--runs-root", str(runs_root), "--auth", "ada:lovelace")
    try:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("text=Login", timeout=60_000)
        assert page.locator("#model-status").count() == 0
        page.get_by_label("username").fill("ada")
        page.get_by_label("password").fill("lovelace")
        page.get_by_role("button", name="Login").click()
        page.wait_for_selector("#model-status >> text=LoRA adapter on", timeout=120_000)
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_a_dpo_run_chats_in_the_browser(browser, shared_tiny_llama, tmp_path):
    """A DPO run's adapter/ holds TRL's frozen reference copy in ref/ beside the trained adapter; the Chat tab loads
    the run as it loads an SFT run, and answers."""
    run_dir = tmp_path / "dpo-run"
    result = run_cli("--profile", "cpu", "--model", str(shared_tiny_llama), "--method", "dpo", "--dataset", "sample",
                     "--max-steps", "2", "--set", "eval_size=0", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (run_dir / "adapter" / "ref").is_dir()
    server, url = serve_ui(str(run_dir), "--runs-root", str(tmp_path))
    try:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#model-status >> text=LoRA adapter on", timeout=120_000)
        page.fill("#message textarea", "Hello")
        page.press("#message textarea", "Enter")
        bot = page.locator('#chatbot [data-testid="bot"]')
        wait_until(page, lambda: bot.count() == 1 and bot.inner_text().strip() != ""
                   and not page.locator("#chatbot .generating, #chatbot .pending").count(), 180)
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "Traceback" not in output, output
