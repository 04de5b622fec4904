"""Create a tiled catalog database in this process (what ``tiled catalog init`` does)."""

from __future__ import annotations

import threading

__all__ = ["create_catalog_database"]


def create_catalog_database(uri: str, timeout_s: float) -> None:
    """Create tiled's tables in the database ``uri`` and stamp its schema revision, unless
    it holds a tiled catalog already.

    The steps of ``tiled catalog init --if-not-exists`` (tiled's own functions), run on a
    thread of their own with their own event loop and connections (SQLite connections are
    not shared between threads), instead of a second Python process that imports tiled
    again (~4 s of CPU).

    Raises
    ------
    RuntimeError
        With the error of the database, or if it took longer than ``timeout_s`` seconds.
    """
    errors: list[BaseException] = []

    def work() -> None:
        try:
            import asyncio  # noqa: PLC0415 - tiled's server side, imported when needed

            from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415
            from tiled.alembic_utils import (  # noqa: PLC0415
                UninitializedDatabase,
                check_database,
                stamp_head,
            )
            from tiled.catalog.alembic_constants import (  # noqa: PLC0415
                ALEMBIC_DIR,
                ALEMBIC_INI_TEMPLATE_PATH,
            )
            from tiled.catalog.core import (  # noqa: PLC0415
                ALL_REVISIONS,
                REQUIRED_REVISION,
                initialize_database,
            )
            from tiled.utils import ensure_specified_sql_driver  # noqa: PLC0415

            database = ensure_specified_sql_driver(uri)

            async def setup() -> None:
                engine = create_async_engine(database)
                try:
                    await check_database(engine, REQUIRED_REVISION, ALL_REVISIONS)
                except UninitializedDatabase:
                    await initialize_database(engine)
                finally:
                    await engine.dispose()

            asyncio.run(setup())
            stamp_head(ALEMBIC_INI_TEMPLATE_PATH, ALEMBIC_DIR, database)
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=work, name="lltolab-catalog-create", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise RuntimeError(f"took longer than {timeout_s} s")
    if errors:
        exc = errors[0]
        text = str(exc).strip().splitlines()
        raise RuntimeError(f"{type(exc).__name__}: {text[-1] if text else ''}") from exc
