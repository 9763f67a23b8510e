"""Sources: a CRM's own webhooks in (verified as it documents them), mapped to duly events.

`verify` checks each CRM's signature scheme, `parse` reads each CRM's payload into `Change`s,
`mapping` turns a change into an event through the source's rules, `receive` delivers the events
through the same service as /api/events, and `importer` backfills records from an export.
"""
