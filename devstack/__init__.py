"""Development tooling, not part of the production package: the embedded servers
(PostgreSQL, Redis, SeaweedFS from wheels) that `make run` and the tests start, and the
launcher behind `make run`."""
