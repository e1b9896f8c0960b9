"""The project store: one SQLite database per project holding images, tags, instances, statuses and history.

- :mod:`annotate.store.project`: :class:`ProjectStore`, versioned label edits with undo / redo;
- :mod:`annotate.store.catalog`: creating and opening projects, classes, images, reading instances;
- :mod:`annotate.store.db`: the connection, transactions, migration on open;
- :mod:`annotate.store.schema`: the schema and its migrations;
- :mod:`annotate.store.history`: undo / redo stacks;
- :mod:`annotate.store.records`: the records, statuses and input checks;
- :mod:`annotate.store.paths`: names inside the project root, never outside it.
"""

from annotate.store.project import (
    DB_NAME,
    IMAGES_DIR,
    RESERVED_CLASS_NAMES,
    SCHEMA_VERSION,
    SOURCES,
    STATUSES,
    Change,
    HistoryEmpty,
    ImageRecord,
    InstanceRecord,
    NewInstance,
    ProjectCatalog,
    ProjectStore,
    VersionConflict,
    check_relative_name,
    paint_semantic,
)

__all__ = [
    "STATUSES",
    "SOURCES",
    "SCHEMA_VERSION",
    "DB_NAME",
    "IMAGES_DIR",
    "RESERVED_CLASS_NAMES",
    "Change",
    "HistoryEmpty",
    "ImageRecord",
    "InstanceRecord",
    "NewInstance",
    "ProjectCatalog",
    "ProjectStore",
    "VersionConflict",
    "check_relative_name",
    "paint_semantic",
]
