"""What the API (and the web pages, and the CLI) do, independent of HTTP.

Each module serves one resource; every function takes the principal it acts for and raises a
`duly.api.errors.ServiceError` (with its HTTP status and a message for people) when it refuses.
Reads take a database session; what reaches Temporal is async and takes an `ApiContext`.
"""
