"""Helpers shared by the test folders (not tests: pytest collects nothing here).

Import them by their full name, the same way from every test folder::

    from tests._support.gateway_proc import GatewayProcess

The repository root is on ``sys.path`` through ``pythonpath = ["."]`` in pyproject's
``[tool.pytest.ini_options]``; ``tests`` itself stays a namespace package (no
``tests/__init__.py``), so the test folders keep pytest's default ``prepend`` import mode.

Modules: ``node`` (the design's reference JavaScript client under Node), ``gateway_proc`` (a gateway
as a real subprocess) and its entry point ``redis_gateway``, ``worker_group`` (``--workers 2``
as real processes, and which worker a client is on), ``redis_server`` (a real
``redis-server``), ``net`` (free ports), ``waiting``
(``eventually``), ``ws`` (raw WebSocket clients), ``broker_listener`` (a recording broker
listener), ``peers`` (recording ``RealtimeConnection`` peers), ``fuzzing`` (hypothesis
strategies for frames) and ``js_chart`` (a browser view of a LiveChart series: the front end's
own ``ChartSeries`` under Node, through ``chart_view.mjs``). The one TCP proxy of the tests is
:class:`rtwidgets.chaos.ChaosProxy` (cut, refuse, slow, throttle, pause, break on a marker).
"""
