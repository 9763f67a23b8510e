"""Notifications: people hear about their tasks and alerts in-app and on their own channels.

In-app needs nothing here: the task and alert rows are the inbox. For the channels a user has
in org.yaml (email, a Slack-compatible webhook, a signed JSON webhook), duly keeps a
transactional outbox:

- `messages` words a notification and `outbox.enqueue`s one delivery per channel, in the
  same transaction as the alert or assignment (activities/process.py), keyed so a retried
  activity queues it once;
- `deliverer` runs beside the worker and sends due deliveries through `channels`, retrying
  with backoff; `signing` signs (and verifies) the JSON webhook.
"""

from duly.notify.deliverer import Deliverer, DeliveryPolicy, delivering, run_deliverer
from duly.notify.messages import assignment_key, notify_alert, notify_task_assigned
from duly.notify.outbox import enqueue, requeue_failed

__all__ = [
    "Deliverer",
    "DeliveryPolicy",
    "assignment_key",
    "delivering",
    "enqueue",
    "notify_alert",
    "notify_task_assigned",
    "requeue_failed",
    "run_deliverer",
]
