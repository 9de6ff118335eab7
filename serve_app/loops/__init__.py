"""Closed-loop placement ("reconciliation"): a deployed policy steering a Kubernetes cluster every period.

:mod:`.controller` (one loop, independent of Serve and MongoDB), :mod:`.build` (a controller from a stored loop),
:mod:`.runner` (threads driven by the ``loops`` collection, with leases), :mod:`.spec` (the REST bodies),
:mod:`.prometheus` (a PromQL latency source). See ``docs/closed-loop.md``.
"""
