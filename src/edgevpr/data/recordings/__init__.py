"""Robots' own recordings as image sources: video files (PyAV) and ROS 1 / ROS 2 bags
(``rosbags``, no ROS install), read as iterators of timestamped frames, never whole.

``open_frames(path, options)`` yields ``Frame`` s in time order, sub-sampled (``every`` N-th
frame or ``fps``), each with its position when a positions source is given (a NavSatFix or
Odometry topic, or a ``timestamp,x,y[,heading]`` CSV) matched by nearest timestamp within
``max_time_gap``. ``recording_folder`` writes them once into edgevpr's folder format (cached),
so every command that takes a folder takes a recording too."""

from edgevpr.data.recordings.folder import image_folder, options_of, recording_folder
from edgevpr.data.recordings.frames import Frame, RecordingOptions, is_recording, open_frames

__all__ = ["Frame", "RecordingOptions", "image_folder", "is_recording", "open_frames", "options_of", "recording_folder"]
