"""Pipelines: the life cycle's stages as plain functions (``stages``), the entry points of the
``dvc.yaml`` stages (``maskops pipeline export|evaluate|release``), and Prefect flows (``flows``:
``retrain`` and ``monitor``).

Nothing here is imported by ``import maskops``; Prefect is imported only by ``maskops.pipelines.flows``
(the optional ``pipelines`` extra).
"""
