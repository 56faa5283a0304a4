"""Browser tier: a live session survives reloads, tabs keep their own drawings, lost replies time out, and the HUD,
the Seed box and the history say what really happened (issue "live sessions")."""

import shutil
import time

import numpy as np
import pytest

from bench.e2e import draw_stroke, open_canvas, shown_seq, wait_idle
from tests.ui.test_browser import data_url_image

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium is not installed"),
]


def frames(page) -> int:
    return page.evaluate("() => window.__ss.stats.frames")


def draw_until_a_new_frame(page, index: int) -> None:
    """Draw one stroke and wait until a frame newer than the ones before it is painted."""
    before = shown_seq(page)
    draw_stroke(page, index)
    page.wait_for_function(f"Number(document.querySelector('#ss-output').dataset.seq) > {before}", timeout=60_000)


def reload(page) -> None:
    page.reload()
    page.wait_for_selector("#ss-canvas")
    page.wait_for_function("window.__ss !== undefined")


def ink_rows(page) -> np.ndarray:
    """Which of the sketch's rows (top to bottom, 128 of them) carry ink."""
    return (data_url_image(page.evaluate("() => window.__ss.sketch()")) < 128).any(axis=1)


def test_draw_reload_draw_gives_frames_after_the_reload(app_url, chromium):
    url, _ = app_url
    context = chromium.new_context()
    page = open_canvas(chromium, url, context=context)
    for index in range(6):  # enough requests that an old seq counter would outrun the new page's for a while
        draw_until_a_new_frame(page, index)
    reload(page)
    draw_until_a_new_frame(page, 7)
    wait_idle(page)
    stats = page.evaluate("() => window.__ss.stats")
    assert stats["frames"] >= 1 and stats["errors"] == 0 and stats["stale"] <= 1
    context.close()


def test_a_reload_mid_stroke_then_drawing_gives_frames(app_url, chromium):
    url, _ = app_url
    context = chromium.new_context()
    page = open_canvas(chromium, url, context=context)
    draw_until_a_new_frame(page, 1)
    draw_stroke(page, 2, release=False)  # the pen is down when the page goes away
    reload(page)
    page.mouse.up()
    draw_until_a_new_frame(page, 3)
    assert frames(page) >= 1
    context.close()


def test_two_tabs_each_reload_and_keep_their_own_drawing(app_url, chromium):
    url, _ = app_url
    context = chromium.new_context()  # one browser profile: the tabs share localStorage, as real tabs do
    a, b = open_canvas(chromium, url, context=context), open_canvas(chromium, url, context=context)
    box = a.locator("#ss-canvas").bounding_box()
    for page, y in ((a, 0.2), (b, 0.8)):
        page.bring_to_front()
        box = page.locator("#ss-canvas").bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * y)
        page.mouse.down()
        for k in range(1, 11):
            page.mouse.move(box["x"] + box["width"] * (0.2 + 0.06 * k), box["y"] + box["height"] * y)
            page.wait_for_timeout(15)
        page.mouse.up()
        wait_idle(page)
    for page in (a, b):
        reload(page)
        page.wait_for_function("window.__ss.stats.frames > 0", timeout=60_000)  # the restored drawing is sent
    top, bottom = slice(0, 64), slice(64, 128)
    assert ink_rows(a)[top].any() and not ink_rows(a)[bottom].any(), "tab A lost its drawing or got B's"
    assert ink_rows(b)[bottom].any() and not ink_rows(b)[top].any(), "tab B lost its drawing or got A's"
    context.close()


def test_a_lost_reply_times_out_in_the_hud_and_frames_resume(app_url, chromium, monkeypatch):
    url, sessions = app_url
    page = open_canvas(chromium, url)
    draw_until_a_new_frame(page, 0)
    real = sessions.live_generate_bytes
    stalled = {"on": True}

    def slow(header, snapshot):
        while stalled["on"]:
            time.sleep(0.05)
        return real(header, snapshot)

    monkeypatch.setattr(sessions, "live_generate_bytes", slow)
    page.evaluate("() => { window.__ss.replyTimeout.ms = 800; }")
    draw_stroke(page, 4)
    page.wait_for_function(
        "document.querySelector('#ss-notice').textContent.includes('no reply to frame')", timeout=30_000
    )
    assert "no reply within" in page.locator("#ss-hud").text_content()
    stalled["on"] = False
    monkeypatch.setattr(sessions, "live_generate_bytes", real)
    page.evaluate("() => { window.__ss.replyTimeout.ms = 30000; }")
    draw_until_a_new_frame(page, 5)  # the canvas did not stay "in flight"
    page.close()


def test_stroke_to_pixel_after_a_settings_change_counts_from_the_change(app_url, chromium):
    url, _ = app_url
    page = open_canvas(chromium, url)
    draw_until_a_new_frame(page, 0)
    wait_idle(page)
    page.wait_for_timeout(2500)  # the last stroke is now long ago
    before = shown_seq(page)
    page.evaluate("() => { window.__t0 = performance.now(); window.__ss.setParams({prompt: 'a red house'}); }")
    page.wait_for_function(f"Number(document.querySelector('#ss-output').dataset.seq) > {before}", timeout=60_000)
    s2p, elapsed = page.evaluate("() => [window.__ss.stats.breakdown.at(-1).s2p, performance.now() - window.__t0]")
    assert s2p <= elapsed, f"stroke->pixel {s2p:.0f} ms counts from before the change ({elapsed:.0f} ms ago)"
    page.close()


def test_with_lock_seed_off_the_seed_box_shows_the_seed_that_drew_the_picture(app_url, chromium):
    url, sessions = app_url
    page = open_canvas(chromium, url)
    draw_until_a_new_frame(page, 0)
    page.get_by_label("Lock seed (off: new seed per stroke)").uncheck()
    draw_until_a_new_frame(page, 1)
    wait_idle(page)
    page.wait_for_timeout(500)
    shown = int(page.locator("#ss-seed input").input_value())
    session = page.evaluate("() => window.__ss.session")
    used = sessions.session(session).shown.params["seed"]
    assert shown != 0 and shown == used
    page.close()


def test_typing_a_prompt_adds_one_history_entry_not_one_per_key(app_url, chromium):
    url, sessions = app_url
    page = open_canvas(chromium, url)
    draw_until_a_new_frame(page, 0)
    wait_idle(page)
    page.wait_for_timeout(2000)  # the stroke's own entry is written
    before = len(sessions.history.entries(limit=10_000))
    prompt = page.get_by_label("Prompt")
    prompt.click()
    prompt.press("End")
    prompt.press_sequentially(", in the rain", delay=80)
    page.wait_for_timeout(4000)  # typing rests: the settled prompt goes to the history once
    wait_idle(page)
    after = len(sessions.history.entries(limit=10_000))
    assert after - before == 1, f"{after - before} history entries for one typed prompt"
    page.close()


def test_the_resolution_control_shows_the_models_own_resolution(app_url, chromium):
    url, sessions = app_url
    page = open_canvas(chromium, url)
    native = sessions.host.registry.get(sessions.default_model).resolution
    assert page.get_by_role("combobox", name="Resolution").input_value() == str(native)
    page.close()


def test_a_background_tab_keeps_one_request_in_flight_and_sends_its_latest_drawing_after(
    app_url, chromium, monkeypatch
):
    """A tab the person is not drawing in: pen-ups made while a reply is awaited are not each sent (the server would
    answer all but the newest "stale"); the newest goes once the reply comes, and it is the frame shown."""
    url, sessions = app_url
    page = open_canvas(chromium, url)
    page.evaluate("() => { window.__ss.foreground = false; }")
    draw_until_a_new_frame(page, 0)
    real, gate, seen = sessions.live_generate_bytes, {"open": False}, []

    def gated(header, snapshot):
        seen.append(header["seq"])
        while not gate["open"]:
            time.sleep(0.05)
        return real(header, snapshot)

    monkeypatch.setattr(sessions, "live_generate_bytes", gated)
    for index in (1, 2, 3, 4):  # four pen-ups; the first one's reply is held back
        draw_stroke(page, index)
        page.wait_for_timeout(100)
    page.wait_for_timeout(500)
    assert len(seen) == 1, f"requests sent while one was in flight: {seen}"
    gate["open"] = True
    wait_idle(page)
    page.wait_for_function(f"Number(document.querySelector('#ss-output').dataset.seq) === {max(seen)}", timeout=30_000)
    assert len(seen) == 2 and page.evaluate("() => window.__ss.stats.stale") == 0
    page.close()


def test_every_open_tab_sees_a_new_history_entry(app_url, chromium):
    """The history gallery refreshes per tab: one tab seeing the new entry does not hide it from another. (The
    stroke's pen-up goes to the history even when its last mid-stroke frame already showed the whole stroke.)"""
    url, _ = app_url
    context = chromium.new_context()
    a, b = open_canvas(chromium, url, context=context), open_canvas(chromium, url, context=context)
    newest = "() => { const img = document.querySelector('#ss-history img'); return img ? img.src : ''; }"
    a.wait_for_timeout(3500)  # both tabs have had a refresh
    before = a.evaluate(newest), b.evaluate(newest)
    a.bring_to_front()
    draw_until_a_new_frame(a, 3)  # its pen-up frame is a new history entry, shown first
    deadline = time.time() + 15
    pages = ((a, before[0]), (b, before[1]))
    while time.time() < deadline and not all(p.evaluate(newest) not in ("", src) for p, src in pages):
        a.wait_for_timeout(250)
    after = a.evaluate(newest), b.evaluate(newest)
    assert after[0] == after[1] and after[0] not in before, f"newest entry before {before}, after {after}"
    context.close()
