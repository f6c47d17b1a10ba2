"""The sandbox (its world, app and worker, on SQLite) for the consent tests; the fixtures'
definitions live with the sandbox API tests."""

from tests.web.test_sandbox_api import database_url, sandbox  # noqa: F401 (fixtures)
