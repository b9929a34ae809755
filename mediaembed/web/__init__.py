"""`mediaembed serve`: the search page and its JSON API, on Starlette and uvicorn (no front-end build).

- `app`: the routes (the page, `/api/search`, `/api/openapi.json`) over one long-lived `Searcher`.
- `api`: the JSON answer and error bodies, and the OpenAPI document that describes them.
- `query`: a request's search parameters and upload, parsed and checked (pure).
- `hits`: what the page shows of a hit (its player, span and scores).
- `guard`: what every response gets: security headers, one access-log line, never a traceback.
- `auth`: the optional bearer token and which addresses may be bound without one.
- `server`: uvicorn on a socket bound first, so a port in use is one line; graceful stop on SIGINT/SIGTERM.
"""
