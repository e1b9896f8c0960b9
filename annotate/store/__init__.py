"""The project store: one SQLite database per project holding images, tags, instances, statuses and history.

- :mod:`annotate.store.project`: :class:`ProjectStore`, versioned label edits with undo / redo;
- :mod:`annotate.store.catalog`: creating and opening projects, classes, images, reading instances;
- :mod:`annotate.store.db`: the connection, transactions, migration on open;
- :mod:`annotate.store.schema`: the schema and its migrations;
- :mod:`annotate.store.history`: undo / redo stacks;
- :mod:`annotate.store.authorship`: which images a person edited since the last automatic pass;
- :mod:`annotate.store.records`: the records, statuses and input checks;
- :mod:`annotate.store.paths`: names inside the project root, never outside it;
- :mod:`annotate.store.layout`: :class:`ProjectLayout`, where caches, outputs and training rounds live;
- :mod:`annotate.store.semantic`: an image's instances painted into one class-id map;
- :mod:`annotate.store.protect`: the project's own files, which no export may write over;
- :mod:`annotate.store.health`: damaged, foreign or busy databases, reported in one line;
- :mod:`annotate.store.pending`: the journal that removes image copies a killed run never registered.
"""

from annotate.store.authorship import hand_edits
from annotate.store.catalog import ProjectCatalog
from annotate.store.layout import ProjectLayout
from annotate.store.paths import DB_NAME, IMAGES_DIR, check_relative_name
from annotate.store.project import ProjectStore
from annotate.store.records import (
    RESERVED_CLASS_NAMES,
    SOURCES,
    STATUSES,
    Change,
    HistoryEmpty,
    ImageRecord,
    InstanceRecord,
    NewInstance,
    VersionConflict,
)
from annotate.store.schema import SCHEMA_VERSION

__all__ = [
    "Change",
    "DB_NAME",
    "HistoryEmpty",
    "IMAGES_DIR",
    "ImageRecord",
    "InstanceRecord",
    "NewInstance",
    "ProjectCatalog",
    "ProjectLayout",
    "ProjectStore",
    "RESERVED_CLASS_NAMES",
    "SCHEMA_VERSION",
    "SOURCES",
    "STATUSES",
    "VersionConflict",
    "check_relative_name",
    "hand_edits",
]
