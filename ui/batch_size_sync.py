"""Every open page's batch-size sliders follow the engine's default batch size.

The Tuning tab's Apply changes the engine's default for everyone, but a slider shows the value
its page loaded with. Each page's timer compares the engine's default with the last one its
sliders followed and moves them only when the default changed, so a value a user set by hand
stays until the next apply. Its own module, not the Tuning tab's: reading the default is for
every user, while the tab's events are for admins (webui.ADMIN_MODULES).
"""

from __future__ import annotations

from collections.abc import Sequence

import gradio as gr

SLIDER_REFRESH_S = 3.0  # how soon an applied batch size reaches the sliders of pages already open


def follow_applied_batch_size(engine, sliders: Sequence[gr.Slider]) -> None:
    """Make `sliders` (AppContext.batch_sliders) follow the engine's default batch size on every
    open page. Call it at the top level of the Blocks, not inside a tab: a timer in a tab the page
    has not shown never ticks."""
    sliders = list(sliders)
    if not sliders:
        return
    # The default this page's sliders last followed; None until the first tick, which takes the
    # value the page shows, loaded from the default (a callable initial value would be a public
    # load event).
    shown = gr.State(None)

    def follow(last, first_slider):
        current = engine.default_batch_size
        if last is None:
            last = first_slider
        if last == current:
            return (*([gr.skip()] * len(sliders)), current)
        return (*([current] * len(sliders)), current)

    timer = gr.Timer(SLIDER_REFRESH_S)
    timer.tick(follow, [shown, sliders[0]], [*sliders, shown], api_visibility="private",
               concurrency_limit=None, show_progress="hidden", queue=False)
