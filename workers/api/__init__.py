"""The webhook and event API (`meta-agent api`): runs that outside systems start.

`POST /hooks/<trigger id>` starts the flow that owns that webhook trigger, `POST
/events/<name>` starts a tenant's flows subscribed to the event and wakes its runs waiting
on it, `GET /runs/<run id>` says how a run stands. Every request is signed (see
`signing`); a sender learns nothing of flows, runs or tenants it may not reach.

It is a Temporal client and a reader of the database, never a worker: it imports the
client (`workers.client`) and `persistence/`, and nothing of the worker's wiring imports it
(an import-linter contract).
"""
