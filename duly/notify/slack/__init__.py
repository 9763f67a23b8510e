"""Slack as a notification channel: duly's side of the conversation.

- `client`: the Web API client, which waits out rate limits.
- `blocks`: the Block Kit of a task, an alert, a closed message and a completion modal.
- `sender`: the `slack` channel's app delivery (chat.postMessage to the user, ts remembered).
- `updates`: rewrite posted messages whose task or alert moved on (chat.update).

What comes back from Slack (buttons, modals, `/duly`) is `duly.slack`'s.
"""
