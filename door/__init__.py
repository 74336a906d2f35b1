"""The door every face goes through before any work starts: who may call (credentials), from
where (no cross-site browser requests), and how much a request may send (bytes, uploads at once).

credentials.py   API keys, UI logins and admins from `server.*`; a malformed entry stops the start
guard.py         the ASGI middleware in front of the API and the web UI, one lock for every route
form.py          the API's multipart reader: streams the file to disk, bounds every field
"""
