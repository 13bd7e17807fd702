"""Every contract test base of the component kinds, in one namespace (the import path of earlier versions; plugin
tests and docs use ``from gflowzoo.testing.contracts import KernelContract``, or the shorter
``from gflowzoo.testing import KernelContract``).

Each contract lives in a module of its own: :mod:`~gflowzoo.testing.kernel_contract`,
:mod:`~gflowzoo.testing.divergence_contract`, :mod:`~gflowzoo.testing.schedule_contract`,
:mod:`~gflowzoo.testing.integrator_contract`, :mod:`~gflowzoo.testing.backbone_contract`,
:mod:`~gflowzoo.testing.dataset_contract` and :mod:`~gflowzoo.testing.method_contract`, with the shared plumbing
(the ``registry`` fixture, :func:`contract_plugins`, :func:`devices`) in :mod:`gflowzoo.testing.base`. This module
re-exports them; its ``__all__`` is the union of theirs (``gflowzoo.testing`` reads it from the source, module by
module, so the names are listed once, in the module that defines them).
"""

from __future__ import annotations

from . import (
    backbone_contract,
    base,
    dataset_contract,
    divergence_contract,
    integrator_contract,
    kernel_contract,
    method_contract,
    schedule_contract,
)
from .backbone_contract import *
from .base import *
from .dataset_contract import *
from .divergence_contract import *
from .integrator_contract import *
from .kernel_contract import *
from .method_contract import *
from .schedule_contract import *

#: the union of the contract modules' lists, in this order
__all__ = (
    base.__all__
    + kernel_contract.__all__
    + divergence_contract.__all__
    + schedule_contract.__all__
    + integrator_contract.__all__
    + backbone_contract.__all__
    + dataset_contract.__all__
    + method_contract.__all__
)
