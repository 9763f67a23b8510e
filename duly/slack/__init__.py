"""The Slack app's inbound half: what people do in Slack, acted on as them.

- `config`: the org's app settings (variable names in org.yaml) and who is who.
- `verify`: Slack's request signatures.
- `interactions`: what a button, a select or a modal submission does, as the clicking user.
- `commands`: `/duly tasks`, `/duly alerts`, `/duly report`.

Messages duly sends and keeps current are `duly.notify.slack`'s.
"""
