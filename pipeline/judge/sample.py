"""The paper's review protocol: one instance a task, picked at random.

Self-Instruct's authors judged 200 tasks on one random instance each (their Table 4: 92% / 79% / 58% /
54%). A judge shown every instance and asked whether *every* one is right answers a stricter question,
so its shares are not comparable with the paper's. Each task is therefore also judged on one instance,
picked by a seeded draw (the judge's seed and the task id: the same instance on every rerun); a task
with one instance needs no second request. The all-instances verdict stays beside it.
"""

from __future__ import annotations

import random

from pipeline.run.schemas import MachineTask


def sampled_instance(task: MachineTask, seed: int) -> int:
    """The 0-based index of the instance the paper-comparable verdict is about."""
    return random.Random(f"{seed}:{task.id}").randrange(len(task.instances)) if task.instances else 0


def with_one_instance(task: MachineTask, index: int) -> MachineTask:
    """`task` showing the judge only its instance `index`."""
    return task.model_copy(update={"instances": [task.instances[index]]})
