"""What a worker has free for tasks: cpus, memory, disk and GPUs (by device).

A leased task starts when what it asks for fits in what is free (tasks start
in the order they were leased: a big one is not passed by smaller ones for
ever); its GPUs are given by number, for CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

from ..resources import Need


class Pool:
    def __init__(self, offer: Need, gpus: tuple[str, ...]) -> None:
        self.offer = offer
        self.free = list(offer)
        self.gpus = list(gpus)              # free GPU device numbers, as the node names them

    def fits(self, need: Need) -> bool:
        return need.fits(self.free)

    def ever_fits(self, need: Need) -> bool:
        """Whether the node could run it at all (a scheduler only sends those)."""
        return need.fits(self.offer)

    def take(self, need: Need) -> tuple[str, ...]:
        """Hold what `need` asks for; returns the GPUs given."""
        assert self.fits(need)
        for i in range(4):
            self.free[i] -= need[i]
        given, self.gpus = tuple(self.gpus[:need.gpus]), self.gpus[need.gpus:]
        return given

    def give_back(self, need: Need, gpus: tuple[str, ...]) -> None:
        for i in range(4):
            self.free[i] += need[i]
        self.gpus.extend(gpus)
