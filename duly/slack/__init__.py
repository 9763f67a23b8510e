"""The Slack app: direct messages with buttons and modals, `/duly`, and keeping messages current.

- `config`: the org's app settings (variable names in org.yaml), the Web API client, who is who.
- `blocks`: the Block Kit of a task, an alert, a closed message and a completion modal.
- `sender`: the `slack` channel's app delivery (chat.postMessage to the user, ts remembered).
- `updates`: rewrite posted messages whose task or alert moved on (chat.update).
- `interactions`: what a button, a select or a modal submission does, as the clicking user.
- `commands`: `/duly tasks`, `/duly alerts`, `/duly report`.
"""
