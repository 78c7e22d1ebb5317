"""DROID recordings through the ZED SDK (backend ``zed``, a CUDA GPU; no RT cores needed), and
``raygen droid calibrate``. pyzed.sl is imported only in raygen.actors.zed.svo, through raygen._deps.require,
inside the worker process; the rest of raygen imports and tests without it."""
