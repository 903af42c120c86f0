"""Streaming: wire protocol, sources (ZeroMQ, movie replay), camera emulator, the pipeline.

See :mod:`stream3d.stream.pipeline` for the data flow and :mod:`stream3d.stream.protocol`
for the native wire format.
"""

from stream3d.stream.camera import Camera, CameraReport, Faults, malformed_message, play
from stream3d.stream.compute import Stages, default_stages
from stream3d.stream.pipeline import Pipeline, RunOptions, Snapshot, Summary, run_pipeline
from stream3d.stream.protocol import (
    End, FrameMessage, Kind, Malformed, Start, decode, encode_end, encode_frame, encode_start,
)
from stream3d.stream.sources import FileSource, NoSource, ZmqSource, endpoint

__all__ = [
    "Camera", "CameraReport", "Faults", "malformed_message", "play", "Stages", "default_stages",
    "Pipeline", "RunOptions", "Snapshot", "Summary", "run_pipeline", "End", "FrameMessage",
    "Kind", "Malformed", "Start", "decode", "encode_end", "encode_frame", "encode_start",
    "FileSource", "NoSource", "ZmqSource", "endpoint",
]
