"""Frame sources (file, webcam, RTSP/HTTP) and sinks (video file, JSONL events)."""
