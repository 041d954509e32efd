"""The TFLite Metadata flatbuffer, written and read with the `flatbuffers` runtime.

The tables below restate tflite-support's `metadata_schema.fbs` (Apache-2.0; schema version 1.5.0,
file identifier "M001"; the file ships in the tflite-support wheel and in the tensorflow/tflite-support
and google-ai-edge/LiteRT repositories). Nothing is generated or copied from it: each field is
declared with its name and its field id, which is the field's position inside its table in the
.fbs (a union field takes two ids: `<name>_type`, then `<name>`); its vtable slot is 4 + 2 * id.
`added` is the schema version a table, field or enum value appeared in ("Added in:" in the .fbs),
from which `min_parser_version` is derived.

Metadata is handled as plain dicts keyed by the .fbs field names, with enum and union members by
name: the JSON that `flatc --json --strict-json` prints for the same schema, so tests compare the
two directly.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FILE_IDENTIFIER = b"M001"
SCHEMA_VERSION = "1.5.0"
BASE_VERSION = "1.0.0"  # the smallest parser version of any metadata ("M001" files)


@dataclass(frozen=True)
class Enum:
    name: str
    names: tuple[str, ...]  # index = value
    added: tuple[tuple[str, str], ...] = ()  # (value name, schema version)

    def encode(self, value: str | int) -> int:
        if isinstance(value, int):
            return value
        if value not in self.names:
            raise ValueError(f"{self.name}: unknown value {value!r} (one of {', '.join(self.names)})")
        return self.names.index(value)

    def decode(self, value: int) -> str | int:
        return self.names[value] if 0 <= value < len(self.names) else value  # flatc prints unknown values as numbers


@dataclass(frozen=True)
class Union:
    name: str
    members: tuple[str, ...]  # table names; index = type value, 0 is NONE


@dataclass(frozen=True)
class Field:
    name: str
    id: int
    kind: str  # string, [string], uint, int, float, enum, table, [table], union, [float], [uint], [ubyte]
    ref: Any = None  # Enum, Union or a table name
    added: str | None = None


@dataclass(frozen=True)
class Table:
    name: str
    fields: tuple[Field, ...]
    added: str | None = None

    @property
    def slots(self) -> int:
        return max((f.id + (2 if f.kind == "union" else 1) for f in self.fields), default=0)

    @property
    def keys(self) -> set[str]:
        return {f.name for f in self.fields} | {f"{f.name}_type" for f in self.fields if f.kind == "union"}


AssociatedFileType = Enum("AssociatedFileType", (
    "UNKNOWN", "DESCRIPTIONS", "TENSOR_AXIS_LABELS", "TENSOR_VALUE_LABELS", "TENSOR_AXIS_SCORE_CALIBRATION",
    "VOCABULARY", "SCANN_INDEX_FILE"), added=(("VOCABULARY", "1.0.1"), ("SCANN_INDEX_FILE", "1.4.0")))
ColorSpaceType = Enum("ColorSpaceType", ("UNKNOWN", "RGB", "GRAYSCALE"))
BoundingBoxType = Enum("BoundingBoxType", ("UNKNOWN", "BOUNDARIES", "UPPER_LEFT", "CENTER"))
CoordinateType = Enum("CoordinateType", ("RATIO", "PIXEL"))
ScoreTransformationType = Enum("ScoreTransformationType", ("IDENTITY", "LOG", "INVERSE_LOGISTIC"))

ContentProperties = Union("ContentProperties", (
    "NONE", "FeatureProperties", "ImageProperties", "BoundingBoxProperties", "AudioProperties"))
ProcessUnitOptions = Union("ProcessUnitOptions", (
    "NONE", "NormalizationOptions", "ScoreCalibrationOptions", "ScoreThresholdingOptions", "BertTokenizerOptions",
    "SentencePieceTokenizerOptions", "RegexTokenizerOptions"))

_FILES = ("[table]", "AssociatedFile")
TABLES: dict[str, Table] = {t.name: t for t in (
    Table("AssociatedFile", (
        Field("name", 0, "string"), Field("description", 1, "string"), Field("type", 2, "enum", AssociatedFileType),
        Field("locale", 3, "string"), Field("version", 4, "string", added="1.4.1"))),
    Table("FeatureProperties", ()),
    Table("ImageSize", (Field("width", 0, "uint"), Field("height", 1, "uint"))),
    Table("ImageProperties", (Field("color_space", 0, "enum", ColorSpaceType), Field("default_size", 1, "table", "ImageSize"))),
    Table("BoundingBoxProperties", (
        Field("index", 0, "[uint]"), Field("type", 1, "enum", BoundingBoxType), Field("coordinate_type", 2, "enum", CoordinateType))),
    Table("AudioProperties", (Field("sample_rate", 0, "uint"), Field("channels", 1, "uint")), added="1.3.0"),
    Table("ValueRange", (Field("min", 0, "int"), Field("max", 1, "int"))),
    Table("Content", (Field("content_properties", 0, "union", ContentProperties), Field("range", 2, "table", "ValueRange"))),
    Table("NormalizationOptions", (Field("mean", 0, "[float]"), Field("std", 1, "[float]"))),
    Table("ScoreCalibrationOptions", (
        Field("score_transformation", 0, "enum", ScoreTransformationType), Field("default_score", 1, "float"))),
    Table("ScoreThresholdingOptions", (Field("global_score_threshold", 0, "float"),)),
    Table("BertTokenizerOptions", (Field("vocab_file", 0, *_FILES),), added="1.1.0"),
    Table("SentencePieceTokenizerOptions", (
        Field("sentencePiece_model", 0, *_FILES), Field("vocab_file", 1, *_FILES)), added="1.1.0"),
    Table("RegexTokenizerOptions", (Field("delim_regex_pattern", 0, "string"), Field("vocab_file", 1, *_FILES)), added="1.2.1"),
    Table("ProcessUnit", (Field("options", 0, "union", ProcessUnitOptions),)),
    Table("Stats", (Field("max", 0, "[float]"), Field("min", 1, "[float]"))),
    Table("TensorGroup", (Field("name", 0, "string"), Field("tensor_names", 1, "[string]")), added="1.2.0"),
    Table("TensorMetadata", (
        Field("name", 0, "string"), Field("description", 1, "string"), Field("dimension_names", 2, "[string]"),
        Field("content", 3, "table", "Content"), Field("process_units", 4, "[table]", "ProcessUnit"),
        Field("stats", 5, "table", "Stats"), Field("associated_files", 6, *_FILES))),
    Table("CustomMetadata", (Field("name", 0, "string"), Field("data", 1, "[ubyte]"))),  # data: force_align 16
    Table("SubGraphMetadata", (
        Field("name", 0, "string"), Field("description", 1, "string"),
        Field("input_tensor_metadata", 2, "[table]", "TensorMetadata"), Field("output_tensor_metadata", 3, "[table]", "TensorMetadata"),
        Field("associated_files", 4, *_FILES),
        Field("input_process_units", 5, "[table]", "ProcessUnit", added="1.1.0"),
        Field("output_process_units", 6, "[table]", "ProcessUnit", added="1.1.0"),
        Field("input_tensor_groups", 7, "[table]", "TensorGroup", added="1.2.0"),
        Field("output_tensor_groups", 8, "[table]", "TensorGroup", added="1.2.0"),
        Field("custom_metadata", 9, "[table]", "CustomMetadata", added="1.5.0"))),
    Table("ModelMetadata", (
        Field("name", 0, "string"), Field("description", 1, "string"), Field("version", 2, "string"),
        Field("subgraph_metadata", 3, "[table]", "SubGraphMetadata"), Field("author", 4, "string"),
        Field("license", 5, "string"), Field("associated_files", 6, *_FILES), Field("min_parser_version", 7, "string"))),
)}
ROOT = TABLES["ModelMetadata"]

_SCALARS = {"uint": "Uint32", "int": "Int32", "float": "Float32", "enum": "Int8"}  # enums are `byte`
_VECTORS = {"[float]": ("f", 4), "[uint]": ("I", 4), "[ubyte]": ("B", 1)}


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


# ---------------------------------------------------------------- writing


def build(metadata: Mapping[str, Any]) -> bytes:
    """The ModelMetadata flatbuffer (with the "M001" identifier) of a dict shaped like flatc's JSON."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(_build_table(builder, ROOT, metadata), FILE_IDENTIFIER)
    return bytes(builder.Output())


def _build_table(b: Any, table: Table, obj: Mapping[str, Any]) -> int:
    unknown = set(obj) - table.keys
    if unknown:
        raise ValueError(f"{table.name} has no field {', '.join(sorted(unknown))}")
    # children first: flatbuffers cannot start one object while another is being built
    children: dict[str, int] = {}
    for f in table.fields:
        value = obj.get(f.name)
        if value is None:
            continue
        if f.kind == "string":
            children[f.name] = b.CreateString(value)
        elif f.kind == "[string]":
            children[f.name] = _offset_vector(b, [b.CreateString(s) for s in value])
        elif f.kind == "table":
            children[f.name] = _build_table(b, TABLES[f.ref], value)
        elif f.kind == "[table]":
            children[f.name] = _offset_vector(b, [_build_table(b, TABLES[f.ref], item) for item in value])
        elif f.kind == "union":
            member = obj.get(f"{f.name}_type")
            if member not in f.ref.members[1:]:
                raise ValueError(f"{table.name}.{f.name} needs {f.name}_type (one of {', '.join(f.ref.members[1:])})")
            children[f.name] = _build_table(b, TABLES[member], value)
        elif f.kind in _VECTORS:
            fmt, width = _VECTORS[f.kind]
            b.StartVector(width, len(value), 16 if f.kind == "[ubyte]" else width)
            prepend = {"f": b.PrependFloat32, "I": b.PrependUint32, "B": b.PrependUint8}[fmt]
            for item in reversed(list(value)):
                prepend(item)
            children[f.name] = b.EndVector()
    b.StartObject(table.slots)
    for f in table.fields:
        value = obj.get(f.name)
        if value is None:
            continue
        if f.kind == "union":
            b.PrependUint8Slot(f.id, f.ref.members.index(obj[f"{f.name}_type"]), 0)
            b.PrependUOffsetTRelativeSlot(f.id + 1, children[f.name], 0)
        elif f.kind in _SCALARS:
            number = f.ref.encode(value) if f.kind == "enum" else value
            getattr(b, f"Prepend{_SCALARS[f.kind]}Slot")(f.id, number, 0)  # zero is every field's default: not stored
        else:
            b.PrependUOffsetTRelativeSlot(f.id, children[f.name], 0)
    return b.EndObject()


def _offset_vector(b: Any, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        b.PrependUOffsetTRelative(offset)
    return b.EndVector()


# ---------------------------------------------------------------- reading


def read(buffer: bytes) -> dict[str, Any]:
    """The dict of a ModelMetadata flatbuffer; ValueError when it is not one."""
    buffer = bytes(buffer)
    if len(buffer) < 8 or buffer[4:8] != FILE_IDENTIFIER:
        raise ValueError(f"not TFLite Metadata (no {FILE_IDENTIFIER.decode()} file identifier)")
    try:
        return _read_table(buffer, struct.unpack_from("<I", buffer, 0)[0], ROOT)
    except (struct.error, IndexError, UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"damaged TFLite Metadata: {e}") from None


def _read_table(buf: bytes, pos: int, table: Table) -> dict[str, Any]:
    from flatbuffers import number_types as N
    from flatbuffers.table import Table as FbTable

    t = FbTable(buf, pos)
    out: dict[str, Any] = {}
    for f in table.fields:
        o = t.Offset(4 + 2 * f.id)
        if not o:
            continue
        if f.kind == "union":
            type_value = t.Get(N.Uint8Flags, o + t.Pos)
            if type_value == 0:
                continue
            out[f"{f.name}_type"] = f.ref.members[type_value] if type_value < len(f.ref.members) else type_value
            value_offset = t.Offset(4 + 2 * (f.id + 1))
            if value_offset and type_value < len(f.ref.members):
                out[f.name] = _read_table(buf, t.Indirect(value_offset + t.Pos), TABLES[f.ref.members[type_value]])
        elif f.kind == "string":
            out[f.name] = t.String(o + t.Pos).decode("utf-8")
        elif f.kind in _SCALARS:
            value = t.Get(getattr(N, f"{_SCALARS[f.kind]}Flags"), o + t.Pos)
            out[f.name] = f.ref.decode(value) if f.kind == "enum" else _shortest_float(value) if f.kind == "float" else value
        elif f.kind == "table":
            out[f.name] = _read_table(buf, t.Indirect(o + t.Pos), TABLES[f.ref])
        else:
            start, n = t.Vector(o), t.VectorLen(o)
            if f.kind == "[table]":
                out[f.name] = [_read_table(buf, t.Indirect(start + 4 * i), TABLES[f.ref]) for i in range(n)]
            elif f.kind == "[string]":
                out[f.name] = [t.String(start + 4 * i).decode("utf-8") for i in range(n)]
            else:
                fmt, width = _VECTORS[f.kind]
                if start + n * width > len(buf):
                    raise IndexError(f"{table.name}.{f.name} runs past the end of the buffer")
                values = struct.unpack_from(f"<{n}{fmt}", buf, start)
                out[f.name] = [_shortest_float(v) for v in values] if fmt == "f" else list(values)
    return out


def _shortest_float(value: float) -> float:
    """A float32 as the shortest decimal that rounds to it (what flatc prints): 0.485, not 0.48500001430511475."""
    import numpy as np

    return float(str(np.float32(value)))


# ---------------------------------------------------------------- versions


def min_parser_version(metadata: Mapping[str, Any]) -> str:
    """ModelMetadata.min_parser_version as the schema defines it: the largest "Added in" version of
    all tables, fields and enum values present, at least 1.0.0."""
    found = [BASE_VERSION]

    def walk(table: Table, obj: Mapping[str, Any]) -> None:
        if table.added:
            found.append(table.added)
        for f in table.fields:
            value = obj.get(f.name)
            if value is None:
                continue
            if f.added:
                found.append(f.added)
            if f.kind == "enum":
                found.extend(v for name, v in f.ref.added if f.ref.decode(f.ref.encode(value)) == name)
            elif f.kind == "table":
                walk(TABLES[f.ref], value)
            elif f.kind == "[table]":
                for item in value:
                    walk(TABLES[f.ref], item)
            elif f.kind == "union":
                walk(TABLES[obj[f"{f.name}_type"]], value)

    walk(ROOT, metadata)
    return max(found, key=_version_key)
