"""Early-exit networks on OFA MobileNetV3 backbones (EDANAS's ``avg_macs``, NACHOS's constrained repair).

* :mod:`.heads`: the exit heads (EDANAS: 3 × conv3×3 32/64/128 + ReLU, flatten, linear) and the rule that
  inserts max-pooling until an exit costs less than the next one;
* :mod:`.rule`: the exit rule (leave at the first exit whose softmax margin is at least its threshold),
  per-exit statistics and ``avg_macs``, as pure functions of logits;
* :mod:`.repair`: NACHOS's repair (lower the thresholds from the last intermediate exit backwards while
  ``avg_macs > mmax`` and the accuracy stays at least ``top1_min``);
* :mod:`.network`: :class:`EarlyExitNetwork`, an OFA sub-network with its exit heads, and its exact costs;
* :mod:`.train`: training the exit heads (backbone frozen or joint).

The search space is :class:`nni_ext.spaces.ofa_mbv3_ee.OfaMbv3EeSpace` (``ofa-mbv3-ee``); the trial is
``python -m nni_ext.trials.ofa_ee_trial``.
"""
from __future__ import annotations

from .heads import ExitHead as ExitHead
from .heads import ExitSpec as ExitSpec
from .heads import choose_pool as choose_pool
from .heads import head_cost as head_cost
from .network import EarlyExitNetwork as EarlyExitNetwork
from .repair import RepairResult as RepairResult
from .repair import nachos_repair as nachos_repair
from .rule import ExitStats as ExitStats
from .rule import assign_exits as assign_exits
from .rule import average_macs as average_macs
from .rule import exit_is_active as exit_is_active
from .rule import exit_statistics as exit_statistics
from .rule import score_margin as score_margin
from .rule import select_exit_logits as select_exit_logits
from .train import train_exits as train_exits

__all__ = ["EarlyExitNetwork", "ExitHead", "ExitSpec", "ExitStats", "RepairResult", "assign_exits", "average_macs",
           "choose_pool", "exit_is_active", "exit_statistics", "head_cost", "nachos_repair", "score_margin",
           "select_exit_logits", "train_exits"]
