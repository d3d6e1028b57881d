"""What QuickBooks Online is: entities, fields, references and operations, as plain data."""

from qbflow.catalog.entities import BY_PATH, ENTITIES, EntityDef, Kind, Op, Party, entity

__all__ = ["BY_PATH", "ENTITIES", "EntityDef", "Kind", "Op", "Party", "entity"]
