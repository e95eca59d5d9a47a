"""HTTP API (FastAPI): one router per resource under `routes/`, the caller's role from `deps`, bearer tokens in
`access`, operator actions in `audit_log`; `/health` answers without a token, with its status only.

`keyguard.api.app.create_app` builds the app; this package imports nothing, so `keyguard token` stays light."""
