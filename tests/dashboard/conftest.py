from tests.db.fixtures import database, pg_url, redis_prefix, sqlite_db  # noqa: F401
