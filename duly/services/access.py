"""Who may see and do what: the rules, in one place.

- A rep sees their own tasks and alerts, and the instances they have (had) a task in; they
  complete their own tasks.
- A manager also sees the tasks, alerts and instances of the teams they manage (a task counts
  for its team, and for its assignee's teams), reassigns those tasks to a member of those teams
  (or to themself), acknowledges those alerts, and starts instances of those teams' processes
  (and of processes that name no team).
- An admin sees and does everything.

Completing stays with the assignee (and admins): a manager who wants to finish a rep's task
reassigns it to themself first, so the record says who did the work.

Listing rules are SQL conditions (`*_visible`), so pages and counts respect them; single-item
rules are `require_*` checks that raise `NotAllowed` saying why.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, or_, true
from sqlmodel import col, select

from duly.language.loader import Definitions
from duly.services.auth import Principal
from duly.services.errors import NotAllowed
from duly.store.models import Alert, Instance, Task


def tasks_visible(principal: Principal) -> ColumnElement[bool]:
    """The tasks a principal may see, as a condition on `Task`."""
    if principal.is_admin:
        return true()
    mine = col(Task.assignee) == principal.id
    if not principal.manages:
        return mine
    return or_(
        mine,
        col(Task.team).in_(principal.manages),
        col(Task.assignee).in_(sorted(principal.managed_members)),
    )


def can_see_task(principal: Principal, task: Task) -> bool:
    """Whether a principal may see a task (the same rule as `tasks_visible`)."""
    return (
        principal.is_admin
        or task.assignee == principal.id
        or (task.team is not None and task.team in principal.manages)
        or (task.assignee is not None and task.assignee in principal.managed_members)
    )


def require_complete(principal: Principal, task: Task) -> None:
    """Only the assignee (or an admin) completes a task.

    Raises:
        NotAllowed: Someone else's task.
    """
    if principal.is_admin or task.assignee == principal.id:
        return
    owner = f"assigned to {task.assignee}" if task.assignee else "unassigned"
    hint = (
        "; reassign it to yourself first"
        if can_see_task(principal, task) and principal.manages
        else ""
    )
    raise NotAllowed(f"task {task.id} is {owner}: only its assignee may complete it{hint}")


def require_reassign(principal: Principal, task: Task, to: str) -> None:
    """A manager reassigns their teams' tasks within those teams; an admin, anything to anyone.

    Raises:
        NotAllowed: A rep, a task of another team, or a new assignee outside the manager's teams.
    """
    if principal.is_admin:
        return
    if not principal.manages:
        raise NotAllowed("only managers and admins may reassign tasks; ask your manager")
    if not can_see_task(principal, task):
        raise NotAllowed(f"task {task.id} is not in a team you manage")
    if not principal.oversees(to):
        raise NotAllowed(
            f"{to} is not in a team you manage ({', '.join(principal.manages)}): "
            "you may hand tasks to your teams' members or to yourself"
        )


def alerts_visible(principal: Principal) -> ColumnElement[bool]:
    """The alerts a principal may see: their own, and a manager's teams' members'."""
    if principal.is_admin:
        return true()
    mine = col(Alert.recipient) == principal.id
    if not principal.managed_members:
        return mine
    return or_(mine, col(Alert.recipient).in_(sorted(principal.managed_members)))


def require_alert(principal: Principal, alert: Alert) -> None:
    """A principal may see (and so acknowledge) an alert.

    Raises:
        NotAllowed: Someone else's alert, outside the teams the principal manages.
    """
    if principal.is_admin or principal.oversees(alert.recipient):
        return
    raise NotAllowed(
        f"alert {alert.id} is addressed to {alert.recipient}, who is not in a team you manage"
    )


def instances_visible(principal: Principal, definitions: Definitions) -> ColumnElement[bool]:
    """The instances a principal may see.

    Those with a task the principal may see, and for a manager every instance of a process of
    a team they manage.
    """
    if principal.is_admin:
        return true()
    with_task = col(Instance.id).in_(select(Task.instance_id).where(tasks_visible(principal)))
    processes = team_processes(principal, definitions)
    if not processes:
        return with_task
    return or_(with_task, col(Instance.process).in_(processes))


def team_processes(principal: Principal, definitions: Definitions) -> list[str]:
    """The processes whose `team:` the principal manages."""
    return sorted(
        name
        for name, process in definitions.processes.items()
        if process.spec.team is not None and process.spec.team in principal.manages
    )


def require_start(principal: Principal, definitions: Definitions, process: str) -> None:
    """Managers start instances of their teams' processes (and of team-less ones); admins, any.

    Raises:
        NotAllowed: A rep, or a manager and another team's process.
    """
    if principal.is_admin:
        return
    if not principal.manages:
        raise NotAllowed(
            "only managers and admins may start instances by hand; instances normally start "
            "from the CRM's events (POST /api/events)"
        )
    compiled = definitions.processes.get(process)
    team = compiled.spec.team if compiled is not None else None
    if team is not None and team not in principal.manages:
        raise NotAllowed(f"{process} belongs to team {team}, which you do not manage")
