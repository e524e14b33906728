"""Scale-out of batch work beyond one process: inputs given as paths, ``file://`` URIs or list files,
and the Ray engine of ``maskops detect`` (``maskops.scale.ray_engine``, imported lazily: Ray is the
optional ``ray`` extra).
"""
