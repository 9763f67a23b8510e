"""What duly does for a user, whichever way they ask: the JSON API, the web pages, Slack, the CLI.

Each module serves one resource; every function takes the principal it acts for and raises a
`duly.services.errors.ServiceError` (a message for people, of a kind the API answers with its
HTTP status) when it refuses. Reads take a database session; what reaches Temporal is async and
takes a `ServiceContext`. Nothing here knows HTTP.
"""
