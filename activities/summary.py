"""The weekly summary's activity: work out each manager's summary and queue it, once a week.

`WeeklySummaryWorkflow` (workflows/summary.py) runs it. The deliveries are keyed
`summary/<manager>/<week>` (`duly.summary.queue_summary`), so a retried activity, or a second
run of the same week, queues nothing more: each manager hears once per channel and week.
"""

from __future__ import annotations

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from duly.language.loader import Definitions, load_definitions
from duly.settings import Settings, web_url
from duly.store.db import SessionFactory, write_session
from duly.summary import SummaryError, build_summary, managers, queue_summary
from workflows.contracts import SummaryContract
from workflows.summary_messages import WeeklySummaryInput, WeeklySummaryResult

_log = structlog.get_logger(__name__)


class SummaryActivities:
    """The weekly summary's activity, holding the database and the definitions.

    Args:
        sessions: Makes one session per call.
        settings: duly's settings: where the definitions are (read on first use, when not
            given) and the web app's address for links.
        definitions: The loaded definitions, if the caller has them.
    """

    def __init__(
        self,
        sessions: SessionFactory,
        settings: Settings,
        definitions: Definitions | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self._definitions = definitions

    @property
    def definitions(self) -> Definitions:
        """The definitions, loaded from `settings.definitions` the first time they are needed."""
        if self._definitions is None:
            self._definitions = load_definitions(self.settings.definitions)
        return self._definitions

    @activity.defn(name=SummaryContract.send_weekly_summaries.name)
    def send_weekly_summaries(self, input: WeeklySummaryInput) -> WeeklySummaryResult:
        """Build each manager's summary of the week and queue it on their channels, once."""
        definitions = self.definitions
        link = web_url(self.settings)
        result = WeeklySummaryResult(week=input.week)
        for manager in input.managers or managers(definitions):
            try:
                with write_session(self.sessions) as session:
                    summary = build_summary(
                        session, definitions, manager, input.week, now=input.now, link=link
                    )
                    result.queued[manager] = queue_summary(session, summary)
            except SummaryError as exc:
                raise ApplicationError(str(exc), type="SummaryError", non_retryable=True) from exc
            _log.info(
                "weekly_summary_queued",
                manager=manager,
                week=input.week,
                channels=result.queued[manager],
            )
        return result
