"""rtwidgets benchmarks: rtwidgets vs python-socketio vs a raw ``websockets`` server.

Run ``python -m benchmarks run`` (see ``BENCHMARKS.md``). Modules: ``runner`` (rows,
goals, table, JSON), ``servers`` (the three servers under test), ``loadgen`` (the load
generator process), ``wsclient`` + ``flavors`` (a minimal WebSocket client and each
server's wire format), ``widgetbench`` (B8, the widget path, in-process), ``sharebench``
(B9, sliders shared by two kernels with ``rtwidgets.share``).
"""
