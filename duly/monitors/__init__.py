"""Periodic monitors: definitions/monitors/*.yaml checked on a schedule, alerting on crossings.

- `scheduler`: APScheduler inside the worker, its jobs kept in duly's database. A firing only
  starts a Temporal workflow whose id names the monitor and the time slot
  (`monitor/support-backlog/2026-11-30T09:15Z`), so two workers firing one slot run it once.
  Other periodic jobs register on the same scheduler with `Scheduler.add_periodic`.
- `messages`: what `MonitorWorkflow` (workflows/monitor.py) and its activities
  (activities/monitors.py) exchange.
- `measures`: the measures, as SQL over tasks and the step-outcome fact table.
- `thresholds`: the hysteresis rule: alert once on crossing, once on recovery.

The package's modules are imported one by one; this file imports nothing, so the workflow
sandbox can import `duly.monitors.messages` without the scheduler.
"""
